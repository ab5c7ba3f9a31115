"""The generic suite: every architecture in the registry goes through the same checks — training through
`train.Trainer` on every task, resume, save and reload, tracing, generation — chosen by the capabilities it
declares, never by its name. A new architecture is covered by registering it (config.register)."""
import numpy as np
import pytest
import torch

import runs
import tools
from config import TrainConfig, model_class
from data import TASKS, make_task
from inference import generate_ids
from modules import CAUSAL, STREAMS, architectures, build_model, trace
from test_causality import arch_config
from train import Trainer

ARCHS = sorted(architectures())
TINY = dict(n_layer=1, d_model=16, n_head=2)


def task_trainer(arch, task, out, steps=2, **kw):
    tcfg = TrainConfig(task=task, task_len=6, task_vocab=4, n_keys=2, max_iters=steps, eval_interval=1,
                       eval_iters=1, batch_size=4, warmup_iters=0, sample_len=2, **kw)
    return Trainer(arch_config(arch, **TINY), tcfg, out, progress=False, verbose=False)


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("arch", ARCHS)
def test_every_architecture_trains_on_every_task_through_the_loop(arch, task, tmp_path):
    t = task_trainer(arch, task, tmp_path / "run", steps=1).run()
    assert not t.stopped and len(t.rows) == 2
    task = make_task(task)
    assert all(task.metric_range(k)[0] <= t.rows[-1][k] <= task.metric_range(k)[1] for k in task.metrics())
    assert (t.out / "README.md").exists() and tools.load_json(t.out / "summary.json")["params"] == t.model.num_params()


@pytest.mark.parametrize("arch", ARCHS)
def test_every_architecture_resumes_exactly_and_reloads(arch, tmp_path):
    # a constant schedule: lengthening the run on resume leaves the learning rates of steps 0-1 unchanged
    straight = task_trainer(arch, "copy", tmp_path / "straight", steps=4, schedule="constant").run()
    task_trainer(arch, "copy", tmp_path / "resumed", steps=2, schedule="constant").run()
    resumed = Trainer.resume(tmp_path / "resumed", progress=False, verbose=False, max_iters=4).run()
    assert [r["train_loss"] for r in resumed.rows] == [r["train_loss"] for r in straight.rows]
    model, cfgs, tok = runs.load_run(tmp_path / "resumed")
    assert type(model) is model_class(arch) and cfgs["model"] == resumed.mcfg
    b = resumed.src.val[0]
    with torch.no_grad():
        torch.testing.assert_close(model(b).loss, resumed.model.eval()(b).loss, rtol=0, atol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_every_architecture_traces_without_changing_its_outputs(arch):
    task = make_task("copy", task_len=4, task_vocab=4)
    torch.manual_seed(0)
    m = build_model(arch_config(arch, vocab_size=task.tokenizer.vocab_size, block_size=task.seq_len, **TINY)).eval()
    b = task.batch(2, np.random.default_rng(0), m.batch_layout())
    plain = m(b).logits
    with trace(m) as t:
        traced = m(b).logits
    assert torch.equal(plain, traced)
    text = t.text()
    assert text.splitlines()[0].startswith(f"{type(m).__name__}.forward")
    assert len(t.events) > 2 + len(list(m.children()))  # the architecture's own sub-steps, not just its parts


CAUSAL_ARCHS = [a for a in ARCHS if CAUSAL in model_class(a).capabilities]


@pytest.mark.parametrize("arch", CAUSAL_ARCHS)
def test_every_decoder_generates_and_its_state_equals_recomputation(arch):
    torch.manual_seed(0)
    m = build_model(arch_config(arch, vocab_size=13, block_size=16, **TINY)).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    ids = torch.randint(0, 13, (2, 5))
    recomputed = generate_ids(m, ids, 10, temperature=0, use_cache=False)
    assert recomputed.shape == (2, 15)
    if STREAMS in model_class(arch).capabilities:
        assert torch.equal(generate_ids(m, ids, 10, temperature=0, use_cache=True), recomputed)

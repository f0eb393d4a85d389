"""``bad_teacher`` (Bad Teaching): distil from a competent teacher on D_r and an incompetent one on D_f.

Chundawat, Tarun, Mandal & Kankanhalli, AAAI 2023, "Can Bad Teaching Induce Forgetting? Unlearning in
Deep Networks Using an Incompetent Teacher" (Eq. 1–2). Competent teacher T_s = the input model of request
k (frozen), incompetent teacher T_d = a freshly initialised model of the same architecture (seeded), and
the student starts from the input model. On minibatches of D_e(k) ∪ R, R a random ``retain_fraction`` of
D_r(k), with l_i = 1 for forget samples and 0 for retain samples::

    q_i  = l_i · softmax(T_d(x_i)/T) + (1 − l_i) · softmax(T_s(x_i)/T)
    L(w) = (1/|B|) Σ_i KL(q_i ‖ softmax(f_w(x_i)/T))      (+ the recipe's coupled L2)

(no T² factor, as in the released ``UnlearnerLoss``). Paper defaults: T = 1, one epoch, 30% of the retain
set, Adam lr 1e-4, batch 256. Here: T = 1, 30% of D_r(k), the originals' optimiser and batch size at
``lr_scale`` × their learning rate (1 by default), and 2 epochs: one epoch over ~30% of a 1–4k set is
only a few dozen steps, which left a deleted digits class at ~70% accuracy (2 epochs: ~10%).
Teacher forward passes (two per sample) are counted in ``fwd_samples`` (and ``ctx.info['teacher_samples']``),
not as gradient work.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.core.space import Float, Int
from benchmark.unlearners._distill import (
    batches,
    distill_kl,
    frozen_copy,
    make_step_optimizer,
    optimizer_step,
    request_generator,
    soft_targets,
)
from benchmark.unlearners.base import Context, Request, Unlearner, register_unlearner


def bad_teacher_loss(
    student_logits: torch.Tensor,
    competent_logits: torch.Tensor,
    incompetent_logits: torch.Tensor,
    is_forget: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """(1/|B|) Σ_i KL(q_i ‖ softmax(s_i/T)), q_i the incompetent teacher's softmax on forget samples
    (``is_forget`` true) and the competent teacher's on the others."""
    l = is_forget.to(student_logits.dtype).unsqueeze(1)  # noqa: E741
    target = l * soft_targets(incompetent_logits, temperature) + (1 - l) * soft_targets(
        competent_logits, temperature
    )
    return distill_kl(student_logits, target, temperature)


def incompetent_seed(ctx: Context, request: Request) -> int:
    """Seed of the randomly initialised teacher: fixed by the cell seed and the request, never a cell seed."""
    return 1_000_000_007 + 1_009 * ctx.seed + request.step


@register_unlearner("bad_teacher")
class BadTeacher(Unlearner):
    # searched: the KL temperature and the epochs (up to twice the default); the retain fraction (a cost
    # setting) and the learning rate keep their configured values
    space = {
        "epochs": Int(low=1, search=(1, 4), doc="passes over D_e(k) ∪ R"),
        "retain_fraction": Float(low=0.0, high=1.0, doc="fraction of D_r(k) distilled from the good teacher"),
        "temperature": Float(low=0.0, low_open=True, search=(0.5, 4.0), log=True, doc="KL temperature T"),
        "lr_scale": Float(low=0.0, low_open=True, doc="lr = recipe.lr x this"),
    }
    params = {"epochs": [2, 1], "retain_fraction": [0.3], "temperature": [1.0], "lr_scale": [1.0]}
    test_params = {"epochs": 1}

    def unlearn(self, model: nn.Module, request: Request, ctx: Context) -> nn.Module:
        forget, retain = request.forget, request.retain
        epochs, T = self.hparams["epochs"], self.hparams["temperature"]
        if len(forget) == 0:
            return model.eval()
        competent = frozen_copy(model)
        incompetent = frozen_copy(ctx.make_model(incompetent_seed(ctx, request)))
        gen = request_generator(ctx, "bad_teacher", request)
        n_keep = round(self.hparams["retain_fraction"] * len(retain))
        keep = torch.randperm(len(retain), generator=gen)[:n_keep]
        x = torch.cat([forget.x, retain.x[keep]])
        is_forget = torch.cat(
            [torch.ones(len(forget), dtype=torch.bool), torch.zeros(n_keep, dtype=torch.bool)]
        ).to(x.device)
        opt = make_step_optimizer(model, ctx, self.hparams["lr_scale"])
        teacher_samples = 0
        model.train()
        for _ in range(epochs):
            ctx.check_budget()
            for idx in batches(int(x.shape[0]), ctx.recipe.batch_size, gen):
                xb = x[idx]
                with torch.no_grad():
                    comp, inc = competent(xb), incompetent(xb)
                loss = bad_teacher_loss(model(xb), comp, inc, is_forget[idx], T)
                optimizer_step(opt, model, loss, ctx.recipe.weight_decay)
                ctx.counters.grad_samples += int(idx.numel())
                teacher_samples += 2 * int(idx.numel())
        ctx.info["teacher_samples"] = teacher_samples
        ctx.counters.fwd_samples += teacher_samples
        return model.eval()

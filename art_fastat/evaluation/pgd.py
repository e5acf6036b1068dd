"""
The ``"pgd"`` runner of :func:`art_fastat.evaluation.evaluate`: ART's ``ProjectedGradientDescent`` with the true
labels. With ``pgd_restarts > 1`` ART keeps, per sample, the result of the first run and replaces it by the result of
every later restart that fools the model, so a sample counts as robust only if it survives every restart.
"""

from __future__ import annotations

import numpy as np
from art.attacks.evasion import ProjectedGradientDescent

from art_fastat.evaluation.runners import AttackResult, AttackTask, check_budget, predict_labels

#: ``pgd_step_size=None`` means this times ``eps / pgd_steps`` (Madry et al.: enough to cross the eps-ball 2.5 times).
STEP_SIZE_FACTOR = 2.5


def run(task: AttackTask) -> AttackResult:
    """
    :param task: Options ``steps``, ``step_size`` (``None``: ``2.5 * eps / steps``) and ``restarts``.
    :return: Robust: correct on the adversarial found from every start. Settings: ``max_iter``, ``eps_step``,
             ``num_random_init``.
    """
    steps, restarts = task.options["steps"], task.options["restarts"]
    step_size = task.options["step_size"]
    if step_size is None:
        step_size = STEP_SIZE_FACTOR * task.eps / steps
    settings = {"max_iter": steps, "eps_step": step_size, "num_random_init": restarts}
    robust = np.zeros(len(task.x), dtype=bool)
    if len(task.attacked):
        attack = ProjectedGradientDescent(
            task.classifier,
            norm=np.inf if task.norm_name == "Linf" else 2,
            eps=task.eps,
            eps_step=step_size,
            max_iter=steps,
            num_random_init=restarts,
            batch_size=task.batch_size,
            verbose=task.verbose,
        )
        x_attacked, y_attacked = task.x_attacked, task.y_attacked
        x_adv = attack.generate(x_attacked, y_attacked)
        check_budget("pgd", x_adv, x_attacked, task.eps + task.tolerance, task.norm_name)
        robust[task.attacked] = predict_labels(task.classifier, x_adv, task.batch_size) == y_attacked
    return AttackResult(robust, settings)

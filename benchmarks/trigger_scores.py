"""How clearly `trigger-repair` sees a trigger: the highest score of its trigger estimate on sets with and without one.

    OMP_NUM_THREADS=1 python benchmarks/trigger_scores.py

Sets with a trigger: Fashion-MNIST BadNets (1%, mlp at its default recipe, seeds 0 and 1): a tenth of the poisoned
ids (`poisoned:0.1`), and the 900 suspects of `spectral` detection (with their precision). Sets without one: every
flipped sample of a label-flip poison, on digits (20% of classes 3 and 5) and Fashion-MNIST (10%, and 30% with
its poisoned mlp). The clean
sample is 20,000 retain images (all of digits'), as the method uses. Prints the score and the mask size for each
set (and, where a model was trained, the share of 1,000 stamped clean images it moves to the set's label), with the
likelihood condition (values at least 5 times likelier in the set than in the clean sample) and
without it. Also digits BadNets (10%, a tenth identified; 1%, half identified).
"""

from __future__ import annotations

import sys

from unlearnkit.data import load_dataset, select
from unlearnkit.detect import detect, precision_recall
from unlearnkit.methods.trigger_repair import LIFT, backdoor_rate, estimate_trigger
from unlearnkit.runs import train_model
from unlearnkit.train import default_recipe


def main() -> int:
    cases, models = {}, {}
    for name, opts in (("digits", {"poison": "label-flip", "poison_rate": 0.2}),
                       ("fashion-mnist", {"poison": "label-flip", "poison_rate": 0.1}),
                       ("fashion-mnist", {"poison": "label-flip", "poison_rate": 0.3})):
        data = load_dataset(name, data_options=opts)
        split = select(data.train, "poisoned:1")
        key = f"{name} label-flip {opts['poison_rate']:g}, all flipped"
        cases[key] = (split.forget, split.retain.subset(range(min(20000, len(split.retain)))))
        if opts["poison_rate"] == 0.3:
            models[key] = train_model(data, "mlp", default_recipe(name, "mlp"), progress=False).model
    for rate, share in ((0.1, 0.1), (0.01, 0.5)):  # digits: 13 of 130 poisoned, 6 of 13
        data = load_dataset("digits", data_options={"poison": "badnets", "poison_rate": rate})
        split = select(data.train, f"poisoned:{share}")
        cases[f"digits badnets {rate:g}, poisoned:{share:g}"] = (split.forget, split.retain)
    data = load_dataset("fashion-mnist", data_options={"poison": "badnets"})
    for seed in (0, 1):
        model = train_model(data, "mlp", default_recipe("fashion-mnist", "mlp").with_(seed=seed), progress=False).model
        found = detect(model, data.train, "spectral", rate=0.01)
        precision, _ = precision_recall(found.suspects, data.poison.ids)
        split = select(data.train, "ids:" + ",".join(str(int(i)) for i in found.suspects))
        key = f"fashion-mnist badnets seed {seed}, spectral suspects (precision {precision:.2f})"
        cases[key] = (split.forget, split.retain.subset(range(20000)))
        models[key] = model
        split = select(data.train, "poisoned:0.1", seed=seed)
        key = f"fashion-mnist badnets seed {seed}, poisoned:0.1"
        cases[key] = (split.forget, split.retain.subset(range(20000)))
        models[key] = model
    print(f"{'set':62s} {'score (lift >= ' + format(LIFT, 'g') + ')':>20s} {'pixels':>6s} {'score (any value)':>18s} "
          f"{'pixels':>6s} {'backdoor rate':>13s}")
    for name, (forget, clean) in cases.items():
        likely, common = estimate_trigger(forget.x, clean.x), estimate_trigger(forget.x, clean.x, lift=0.0)
        rate = (f"{backdoor_rate(models[name], likely, forget.y, clean, 'cpu'):13.2f}" if name in models
                else f"{'-':>13s}")
        print(f"{name:62s} {likely.score:20.3f} {int(likely.mask.sum()):6d} {common.score:18.3f} "
              f"{int(common.mask.sum()):6d} {rate}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

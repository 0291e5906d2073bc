"""The report's "What transfers" section: transfer depth, the weight-statistics control, per-stage CKA and
convergence speed, each with a sentence for the conclusion.

It reads results.csv's rows, the runs' validation curves and E/analysis/cka.json (written by the sweep's
similarity analysis); an analysis that is absent or partial is said so, and the rest of the report stands.

    >>> analysis = WhatTransfers.of(exp, config, rows, curves, "test_top1", "val_top1", backbone)
    >>> analysis.section(fig_dir, made), analysis.sentences()
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audio2image.config import CKA_FILE
from audio2image.report import sentences, stats, transfer_figures
from audio2image.report.convergence import convergence_sentence, convergence_table
from audio2image.report.read import experiment_facts
from audio2image.report.text import clipped_note, interval, num, p_value, pct, points, table
from audio2image.training.initspec import describe_depth, parse_init
from audio2image.util import read_json_or_none

BASELINE = "random"


@dataclass
class WhatTransfers:
    rows: list[dict]
    metric: str  # the primary test metric
    depth: dict  # depth init -> its full init
    stats_inits: dict  # statistics-control init -> its full init
    versus_full: list[dict]  # gains of depth and statistics inits over their full init, paired by seed
    gains: list[dict]  # every init's gain over random
    cka: dict | None  # E/analysis/cka.json
    convergence: dict
    val_metric: str
    backbone: dict  # its description (report/read.py: backbone_facts): stages and outputs, in its own words
    source_modality: str = "audio"  # the init naming the pretraining on the source: "audio@2", "image-stats", ...

    @classmethod
    def of(cls, exp: Path, config: dict, rows: list[dict], curves: list[dict], metric: str, val_metric: str,
           backbone: dict, source_modality: str | None = None):
        """`source_modality`: the source's (default: read from the experiment, report/read.py experiment_facts)."""
        if source_modality is None:
            source_modality = experiment_facts(exp, config)["source"]["modality"]
        inits = stats.grid_of(rows, {"inits": config.get("inits")})["inits"]
        specs = {init: _spec(init) for init in inits}
        # a variant (audio@K, audio-stats) is judged against its full init (audio) where the grid has that one
        full = {i: s.base for i, s in specs.items() if (s.depth or s.stats) and s.base in specs}
        versus_full = []
        for whole in dict.fromkeys(full.values()):
            family = {whole, *(i for i, f in full.items() if f == whole)}
            versus_full += stats.gain_table([r for r in rows if r["init"] in family], metric, whole)
        share = float(config.get("convergence_share") or 0.9)
        return cls(rows, metric, depth={i: f for i, f in full.items() if specs[i].depth},
                   stats_inits={i: f for i, f in full.items() if specs[i].stats}, versus_full=versus_full,
                   gains=stats.gain_table(rows, metric, BASELINE), cka=read_json_or_none(exp / CKA_FILE),
                   convergence=convergence_table(curves, share, BASELINE, {"inits": inits}), val_metric=val_metric,
                   backbone=backbone, source_modality=source_modality)

    @property
    def stages(self) -> list[str]:
        return self.backbone["stages"]

    # --- the section -------------------------------------------------------------------------------------------------

    def section(self, fig_dir: Path, made: dict) -> str:
        parts = ["## What transfers",
                 "Four questions beyond final accuracy (Raghu et al. 2019; Neyshabur et al. 2020; Kornblith et al. "
                 "2019; He et al. 2019): which stages carry the gain, whether mere weight statistics do, how "
                 "similar the learned representations are, and whether pretraining speeds convergence."]
        parts += [self._depth(fig_dir, made), self._statistics(), self._similarity(fig_dir, made),
                  self._convergence(fig_dir, made)]
        said = self.sentences()
        if said:
            parts.append("### In words\n\n" + " ".join(said))
        return "\n\n".join(parts)

    def _depth(self, fig_dir: Path, made: dict) -> str:
        words = ", ".join(f"{k}: {'+ ' if k > 1 else ''}{word}" for k, word in enumerate(self.stages, 1))
        source = self.source_modality
        head = (f"### Transfer depth\n\nAn init `{source}@K` carries the first K of the {len(self.stages)} stages "
                f"of the pretrained {self.backbone['backbone']} ({words}) and keeps the rest, the head included, "
                "exactly as the random init of the same seed.")
        if not self.depth:
            return head + f" This experiment has no such init (add e.g. `{source}@2` to `inits`)."
        parts = [head, self._versus_full_table(self.depth)]
        dots = self._depth_points()
        if any(p["n"] for p in dots):
            made["gain_by_depth"] = transfer_figures.gain_by_depth(dots, fig_dir / "gain_by_depth.png", self.metric,
                                                                   self.stages)
            parts.append("![Gain over random init by transfer depth](figures/gain_by_depth.png)")
        return "\n\n".join(parts)

    def _statistics(self) -> str:
        source = self.source_modality
        head = (f"### Weight statistics\n\nAn init `{source}-stats` draws every tensor of the backbone (weights, "
                "biases, position embeddings, tokens, layer scales) i.i.d. from N(mean, std^2) of the pretrained "
                "tensor (seeded by the run's seed) and resets every normalisation layer to the identity (Raghu et "
                "al. 2019's Mean Var init): the pretrained weights' scale without their features. Its gain over "
                "random is in the gain table above; here, against the full init.")
        if not self.stats_inits:
            return head + f" This experiment has no such init (add e.g. `{source}-stats` to `inits`)."
        return head + "\n\n" + self._versus_full_table(self.stats_inits)

    def _versus_full_table(self, inits: dict) -> str:
        gains = [g for g in self.versus_full if g["init"] in inits]
        rows = [[g["init"], g["baseline"], g["freeze"], pct(g["fraction"]), points(g["mean"]),
                 interval(g["ci_low"], g["ci_high"], stats.gain_range(g["metric"]), points), p_value(g["p_holm"]),
                 str(g["n"])] for g in gains]
        if not rows:
            return "No paired results yet."
        text = table(["init", "against", "freeze", "fraction", "difference (points)", "95% CI", "Holm p", "n pairs"],
                     rows)
        return "\n\n".join(filter(None, (text, clipped_note(text))))

    def _depth_points(self) -> list[dict]:
        """Gain over random at each depth (0: random itself; N: the full init), for every depth init's base."""
        dots = []
        for gain in self.gains:
            spec = parse_init(gain["init"])
            if gain["init"] in self.depth or gain["init"] in self.depth.values():
                dots.append({**gain, "depth": spec.depth or len(self.stages)})
        for fraction in sorted({d["fraction"] for d in dots}):
            dots.append({"fraction": fraction, "depth": 0, "mean": 0.0, "ci_low": 0.0, "ci_high": 0.0, "n": 1})
        return dots

    def _similarity(self, fig_dir: Path, made: dict) -> str:
        head = ("### Representation similarity\n\nLinear CKA per stage (Kornblith et al. 2019) on a fixed sample of "
                "the target's validation items, unbiased and accumulated over minibatches (Nguyen et al. 2021), "
                "from each run's best weights: a pretrained init's network against the random init's of the same "
                "seed, each network before against after fine-tuning, and two random inits' networks (the "
                "seed-to-seed baseline). The outputs compared are the backbone's own intermediate outputs, named by "
                "the module that makes each, "
                + ("its patch tokens flattened (the class token left out)" if self.backbone.get("tokens")
                   else "feature maps flattened") + "; pooled is the features the head sees.")
        if self.cka is None:
            return head + ("\n\nNot computed: no analysis/cka.json (cka_items=0, or the sweep has not finished; "
                           "running the same sweep again computes it).")
        problems = self.cka.get("problems") or []
        notes = "\n\n" + "\n".join(f"- {p}" for p in problems) if problems else ""
        summaries, fraction = self._cka_summaries()
        if not summaries:
            return head + "\n\nNo comparison could be computed." + notes
        outputs = self._outputs(summaries)
        made["cka_by_stage"] = transfer_figures.cka_by_stage(summaries, fig_dir / "cka_by_stage.png", outputs)
        rows = []
        for kind, init in dict.fromkeys((s["kind"], s["init"]) for s in summaries):
            cells = {s["stage"]: s for s in summaries if (s["kind"], s["init"]) == (kind, init)}
            rows.append([kind, init, *(_cka_cell(cells.get(stage)) for stage in outputs)])
        return "\n\n".join([head, f"At {pct(fraction)} of the training split ({self.cka.get('items')} validation "
                            "items; mean over seeds, range in brackets):",
                            table(["comparison", "init", *outputs], rows),
                            "![CKA per stage](figures/cka_by_stage.png)"]) + notes

    def _outputs(self, summaries: list[dict]) -> list[str]:
        """The compared outputs in the network's order (the backbone's; any other the analysis wrote after)."""
        found = list(dict.fromkeys(s["stage"] for s in summaries))
        return [o for o in self.backbone.get("outputs", []) if o in found] + \
            [o for o in found if o not in self.backbone.get("outputs", [])]

    def _cka_summaries(self) -> tuple[list[dict], float | None]:
        """Mean and range over seeds per (kind, init, stage), at the largest fraction that has comparisons."""
        comparisons = list((self.cka or {}).get("comparisons", {}).values())
        if not comparisons:
            return [], None
        fraction = max(c["fraction"] for c in comparisons)
        groups: dict = {}
        for c in comparisons:
            if c["fraction"] == fraction and c.get("freeze", "none") == "none":
                for stage, value in c["cka"].items():
                    groups.setdefault((c["kind"], c["init"], stage), []).append(value)
        summaries = [{"kind": k, "init": i, "stage": s, "mean": float(np.mean(v)), "low": float(np.min(v)),
                      "high": float(np.max(v)), "n": len(v)} for (k, i, s), v in groups.items()]
        return summaries, fraction

    def _convergence(self, fig_dir: Path, made: dict) -> str:
        share = self.convergence["share"]
        head = (f"### Convergence speed\n\nPer run, the first epoch whose {stats.metric_name(self.val_metric)} "
                f"reaches {100 * share:g}% of the random init's mean best value at that fraction "
                "(`convergence_share`), paired by seed; a run that never reaches it counts as reaching it one "
                "epoch after its last (so the test is conservative), and is counted below.")
        pairs = self.convergence["pairs"]
        if not pairs:
            return head + "\n\nNo pretrained init has runs to compare yet."
        rows = [[p["init"], p["freeze"], pct(p["fraction"]), _epochs(p["mean"]),
                 f"{_epochs(p['ci_low'])} to {_epochs(p['ci_high'])}", p_value(p["p_holm"]), str(p["n"]),
                 f"{p['n'] - p['reached']} / {p['n'] - p['baseline_reached']}"] for p in pairs]
        parts = [head, table(["init", "freeze", "fraction", "difference (epochs, init - random)", "95% CI",
                              "Holm p", "n pairs", "never reached (init / random)"], rows)]
        if any(c["n"] for c in self.convergence["cells"]):
            made["convergence"] = transfer_figures.convergence_epochs(self.convergence["cells"],
                                                                       fig_dir / "convergence.png", share)
            parts.append("![Epochs to the convergence threshold](figures/convergence.png)")
        return "\n\n".join(parts)

    # --- the conclusion's sentences -----------------------------------------------------------------------------

    def brief(self) -> list[str]:
        """A short sentence each for the conclusion: depth and statistics against their full init, CKA, speed."""
        out = []
        for (init, freeze, whole), group in stats.groups(self.versus_full, ("init", "freeze", "baseline")).items():
            out.append(f"{init} against {whole}" + (f" (freeze {freeze})" if freeze != "none" else "") + ": "
                       + _verdict_words(group) + ".")
        summaries, fraction = self._cka_summaries()
        within = self._within_baseline(summaries)
        if within:
            count = len(self._outputs(summaries))
            by_count = stats.groups([{"init": i, "n": n} for i, n in within.items()], ("n",))
            out.append(f"CKA at {pct(fraction)}: as similar to random's network as two random ones at "
                       + "; ".join(f"{n} of {count} outputs ({', '.join(g['init'] for g in group)})"
                                   for (n,), group in by_count.items()) + ".")
        pairs = self.convergence["pairs"]
        if stats.tested(pairs):
            faster = sorted({p["init"] for p in pairs if p["significant"] and p["mean"] < 0})
            slower = sorted({p["init"] for p in pairs if p["significant"] and p["mean"] > 0})
            out.append("Convergence: " + ("; ".join(filter(None, (
                f"significantly sooner than random: {', '.join(faster)}" if faster else "",
                f"significantly later: {', '.join(slower)}" if slower else ""))) or
                "no init reached the threshold significantly sooner or later than random") + ".")
        return out

    def _within_baseline(self, summaries: list[dict]) -> dict:
        """{init: how many outputs its network is as similar to random's as two random networks are}."""
        baseline = {s["stage"]: s for s in summaries if s["kind"] == "random vs random"}
        if not baseline:
            return {}
        counts: dict = {}
        for s in summaries:
            if s["kind"] == "init vs random" and s["stage"] in baseline:
                counts[s["init"]] = counts.get(s["init"], 0) + (s["mean"] >= baseline[s["stage"]]["low"])
        return counts

    def sentences(self) -> list[str]:
        out = []
        for key, group in stats.groups(self.versus_full, ("init", "freeze", "baseline")).items():
            init = key[0]
            what = (f"Transfer depth ({describe_depth(parse_init(init).depth, self.stages)} only)"
                    if init in self.depth
                    else "Weight statistics alone")
            out.append(f"{what}: " + sentences.gain_sentence(*key, group))
        out += self._cka_sentences()
        if self.convergence["pairs"]:
            out.append(convergence_sentence(self.convergence["pairs"], self.convergence["share"], BASELINE,
                                            self.val_metric))
        return out

    def _cka_sentences(self) -> list[str]:
        """Per pretrained init: the stages where its network is as similar to the random init's as two random
        inits' are to each other (its mean CKA at least the lowest seed-to-seed value)."""
        summaries, fraction = self._cka_summaries()
        baseline = {s["stage"]: s for s in summaries if s["kind"] == "random vs random"}
        out, order = [], {g["init"]: k for k, g in enumerate(self.gains)}
        compared = {s["init"] for s in summaries if s["kind"] == "init vs random"}
        for init in sorted(compared, key=lambda i: (order.get(i, len(order)), i)):
            ours = {s["stage"]: s for s in summaries if (s["kind"], s["init"]) == ("init vs random", init)}
            if not baseline:
                out.append(f"CKA: {init} vs random was computed, but with one seed there is no seed-to-seed "
                           "baseline to judge it by.")
                continue
            within = [st for st in self._outputs(summaries) if st in ours and st in baseline
                      and ours[st]["mean"] >= baseline[st]["low"]]
            words = ", ".join(within) if within else "no stage"
            out.append(f"CKA (at {pct(fraction)}): the {init}- and random-init networks are as similar as two "
                       f"random inits' at {words}" + (f" (lowest: {min(ours[s]['mean'] for s in ours):.2f} "
                                                       f"at {min(ours, key=lambda s: ours[s]['mean'])})" if ours
                                                       else "") + ".")
        return out


def _spec(init: str):
    """The parts of an init name; a name that is not one (a foreign row) counts as a plain init."""
    try:
        return parse_init(init)
    except ValueError:
        return parse_init("random")


def _cka_cell(summary: dict | None) -> str:
    if summary is None:
        return "-"
    if summary["n"] == 1:
        return num(summary["mean"])
    return f"{summary['mean']:.3f} [{summary['low']:.2f}-{summary['high']:.2f}]"


def _epochs(x) -> str:
    return f"{x:+.1f}" if isinstance(x, float) and np.isfinite(x) else "-"


def _verdict_words(group: list[dict]) -> str:
    """'no difference at 10%, 100%' / 'gain at 10%; no difference at 100%' / 'not tested at 10% (reason)'."""
    words = []
    for g in group:
        verdict = (f"not tested ({g['untested']})" if g["untested"] else
                   ("gain" if g["mean"] > 0 else "loss") if g["significant"] else "no difference")
        words.append((verdict, pct(g["fraction"])))
    return "; ".join(f"{verdict} at {', '.join(f for v, f in words if v == verdict)}"
                     for verdict in dict.fromkeys(v for v, _ in words))

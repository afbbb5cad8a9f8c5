"""Pretrain a space-group classifier on domain-randomised simulated Kikuchi patterns.

Seeded and resumable: every ``--checkpoint-every`` steps the network, the
optimiser, the random-number generators and the replay buffer are written to
``--out``; running the same command again continues from there. Stop it at
any time (Ctrl-C, ``--stop-at HH:MM`` UTC or ``--minutes``): the last
checkpoint is kept.

Data (generated on the fly, never the same pattern twice): a pool of
``--pool`` structures per space group (training prototypes with random
species / lattice parameter / order, or random Wyckoff structures; each with
its own voltage and scattering fall-off, reflectors cached) is renewed by
one new structure every step. Each step simulates ``--sessions-per-step``
*sessions* (:mod:`napari_microstructure.core.ebsd.simulate.domain`) of
``--session-size`` patterns: a random space group (uniform over 221, 223,
225, 227, 229, 230), a structure from its pool, a random detector geometry
and acquisition noise. Small sessions matter: every pattern of a session
shares its detector and noise, which a network can memorise as a shortcut
to the label (a first run with 16-pattern sessions and one session per step
learnt its replay buffer, 0.79, and nothing else, 0.16 on fresh structures). The patterns are
preprocessed as the classifier does (``PatternPreprocessor``: resize to
``--input-size``, gain normalisation, dynamic background, no static
background) and pushed into a replay buffer of ``--buffer`` patterns; each
optimisation step draws ``--batch-size`` patterns from the buffer, mirrored at
random (a mirrored pattern is a pattern of the mirrored orientation: the
Laue class m-3m is centrosymmetric).

Evaluation (``eval_set.npz``, generated once with ``--eval-seed``): patterns of
structures never used in training (held-out prototypes and random structures
from another seed) and of the named real materials; accuracy and
class-weighted precision / recall go to ``log.jsonl``.

Usage::

    PYTHONPATH=src nice -n 10 python scripts/pretrain_ebsd.py --out runs/ebsd-compact --stop-at 09:35
    PYTHONPATH=src python scripts/pretrain_ebsd.py --out runs/ebsd-compact --evaluate
    PYTHONPATH=src python scripts/pretrain_ebsd.py --out runs/ebsd-compact \\
        --export src/napari_microstructure/data/ebsd/spacegroup_pretrained.pt
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from napari_microstructure.core.ebsd import simulate as S  # noqa: E402
from napari_microstructure.core.ebsd.classifier import EBSDClassifier, EBSDNet  # noqa: E402
from napari_microstructure.core.ebsd.metrics import classification_report  # noqa: E402
from napari_microstructure.core.ebsd.preprocess import PatternPreprocessor  # noqa: E402
from napari_microstructure.core.nn.backbones import build_backbone  # noqa: E402
from napari_microstructure.core.nn.training import TrainingHistory  # noqa: E402

CLASSES = np.array(S.SPACE_GROUPS)
#: The committed CNN checkpoints were trained with the first simulator's scattering factors; kept so that
#: a resumed run sees the same data (the band-profile model uses the electron factors since stop 29).
SCATTERING = "z23"
SETTINGS_KEYS = ("backbone", "input_size", "batch_size", "session_size", "sessions_per_step", "pool",
                 "buffer", "lr", "weight_decay", "seed", "dynamic_sigma", "prototype_fraction", "min_counts")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="run folder (checkpoint, log, evaluation set)")
    ap.add_argument("--backbone", default="compact", choices=["compact", "efficientnet-lite0"])
    ap.add_argument("--input-size", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--session-size", type=int, default=4, help="patterns per simulated session")
    ap.add_argument("--sessions-per-step", type=int, default=4, help="new sessions simulated per step")
    ap.add_argument("--pool", type=int, default=24, help="structures per space group in the renewed pool")
    ap.add_argument("--buffer", type=int, default=4096, help="replay buffer size (patterns)")
    ap.add_argument("--prototype-fraction", type=float, default=0.5,
                    help="chance of a prototype (else a random Wyckoff structure) for a new pool structure")
    ap.add_argument("--min-counts", type=float, default=15.0,
                    help="lowest mean electron count per pixel drawn (a higher value is an easier curriculum)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-5)
    ap.add_argument("--dynamic-sigma", type=float, default=0.125)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-seed", type=int, default=20260)
    ap.add_argument("--eval-sessions", type=int, default=12, help="held-out sessions per space group")
    ap.add_argument("--eval-per-material", type=int, default=16, help="patterns per named material")
    ap.add_argument("--max-steps", type=int, default=1_000_000)
    ap.add_argument("--minutes", type=float, default=None, help="stop after this many minutes")
    ap.add_argument("--stop-at", default=None, help="stop at this UTC time (HH:MM)")
    ap.add_argument("--checkpoint-every", type=int, default=50)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--evaluate", action="store_true", help="evaluate the checkpoint and exit")
    ap.add_argument("--export", default=None, help="write the checkpoint as an EBSD model file and exit")
    return ap.parse_args(argv)


def preprocessor(args) -> PatternPreprocessor:
    pre = PatternPreprocessor(args.input_size, static_background=False, dynamic_sigma=args.dynamic_sigma)
    pre.fit(np.ones((1, args.input_size, args.input_size), np.float32))
    pre.pattern_shape_ = None  # trained on square and 4:3 detectors of many sizes: no shape is refused
    return pre


def build_net(args) -> EBSDNet:
    return EBSDNet(build_backbone(args.backbone, pretrained=args.backbone != "compact"), len(CLASSES))


# ----------------------------------------------------------------------------- evaluation set


def make_eval_set(args, pre) -> dict:
    """Held-out structures and named materials, preprocessed, cached in the run folder."""
    path = Path(args.out) / "eval_set.npz"
    if path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    rng = np.random.default_rng(args.eval_seed)
    sampler = S.StructureSampler("heldout", prototype_fraction=0.5, scattering=SCATTERING)
    xs, ys, group = [], [], []
    for sg in CLASSES:
        for _ in range(args.eval_sessions):
            session = S.sample_session(sampler.draw(int(sg), rng), rng, scattering=SCATTERING)
            xs.append(pre.transform(S.simulate_session(session, 8, rng), check=False))
            ys.append(np.full(8, sg))
            group.append(np.zeros(8, int))
    train_sampler = S.StructureSampler("train", scattering=SCATTERING)
    for sg in CLASSES:  # new structures of the training distribution (not in the pool)
        for _ in range(max(1, args.eval_sessions // 2)):
            session = S.sample_session(train_sampler.draw(int(sg), rng), rng, scattering=SCATTERING)
            xs.append(pre.transform(S.simulate_session(session, 8, rng), check=False))
            ys.append(np.full(8, sg))
            group.append(np.full(8, 2))
    for name, structure in S.ALL_MATERIALS.items():
        session = S.sample_session(structure, rng, scattering=SCATTERING)
        m = args.eval_per_material
        xs.append(pre.transform(S.simulate_session(session, m, rng), check=False))
        ys.append(np.full(m, structure.space_group))
        group.append(np.ones(m, int))
    out = {"x": np.concatenate(xs).astype(np.float16), "y": np.concatenate(ys),
           "group": np.concatenate(group)}  # 0: held-out structures, 1: named materials, 2: fresh train-split
    np.savez_compressed(path, **out)
    return out


def evaluate(net, data, batch: int = 256) -> dict:
    net.eval()
    preds = []
    with torch.inference_mode():
        for s in range(0, len(data["x"]), batch):
            xb = torch.from_numpy(data["x"][s:s + batch].astype(np.float32)).unsqueeze(1)
            preds.append(net(xb).argmax(1).numpy())
    pred = CLASSES[np.concatenate(preds)]
    out = {}
    for name, sel in (("heldout_structures", data["group"] == 0), ("named_materials", data["group"] == 1),
                      ("fresh_train_split", data["group"] == 2)):
        if not sel.any():
            continue
        rep = classification_report(data["y"][sel], pred[sel], CLASSES)
        out[name] = {"accuracy": round(float(rep.accuracy), 4),
                     "precision": round(float(rep.weighted_precision), 4),
                     "recall": round(float(rep.weighted_recall), 4)}
    per_class = {}
    sel = data["group"] == 0
    for sg in CLASSES:
        m = sel & (data["y"] == sg)
        per_class[int(sg)] = round(float((pred[m] == sg).mean()), 3)
    out["heldout_per_class"] = per_class
    net.train()
    return out


# ----------------------------------------------------------------------------- state


def rng_state(rng: np.random.Generator) -> str:
    return json.dumps(rng.bit_generator.state)


def set_rng_state(rng: np.random.Generator, text: str) -> None:
    rng.bit_generator.state = json.loads(text)


def pool_to_json(pool) -> str:
    return json.dumps({str(sg): [{"name": b.structure.name, "space_group": b.structure.space_group,
                                  "a": b.structure.a, "atoms": [list(map(float, t)) for t in b.structure.atoms],
                                  "kv": b.kv, "B": b.debye_waller} for b, _ in entries]
                       for sg, entries in pool.items()})


def pool_from_json(text: str) -> dict:
    pool = {}
    for sg, entries in json.loads(text).items():
        pool[int(sg)] = []
        for e in entries:
            st = S.CubicStructure(e["name"], int(e["space_group"]), float(e["a"]), tuple(map(tuple, e["atoms"])))
            base = S.Session(st, None, None, float(e["kv"]), float(e["B"]), SCATTERING)
            pool[int(sg)].append((base, S.session_reflectors(base)))
    return pool


def save_checkpoint(args, net, opt, step, rng, buffer, n_buffer, seen, elapsed, pool) -> None:
    out = Path(args.out)
    tmp = out / "checkpoint.tmp.pt"
    torch.save({"model": net.state_dict(), "optimiser": opt.state_dict(), "step": step,
                "rng": rng_state(rng), "torch_rng": torch.get_rng_state(), "seen": seen,
                "elapsed_s": elapsed, "n_buffer": n_buffer, "pool": pool_to_json(pool),
                "settings": json.dumps({k: getattr(args, k) for k in SETTINGS_KEYS})}, tmp)
    np.savez(out / "buffer.tmp.npz", x=buffer["x"][:n_buffer], y=buffer["y"][:n_buffer])
    os.replace(out / "buffer.tmp.npz", out / "buffer.npz")
    os.replace(tmp, out / "checkpoint.pt")


def load_checkpoint(args, net, opt):
    path = Path(args.out) / "checkpoint.pt"
    if not path.exists():
        return None
    ck = torch.load(path, map_location="cpu", weights_only=True)
    saved = json.loads(ck["settings"])
    saved.setdefault("prototype_fraction", 0.5)
    saved.setdefault("min_counts", 15.0)
    now = {k: getattr(args, k) for k in SETTINGS_KEYS}
    if saved != now:
        raise SystemExit(f"{path} was written with other settings {saved}; use another --out or the same settings")
    net.load_state_dict(ck["model"])
    if opt is not None:
        opt.load_state_dict(ck["optimiser"])
    return ck


# ----------------------------------------------------------------------------- main


def deadline(args, start: float) -> float:
    ends = [start + args.minutes * 60] if args.minutes else []
    if args.stop_at:
        now = dt.datetime.now(dt.timezone.utc)
        hh, mm = map(int, args.stop_at.split(":"))
        stop = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
        if stop <= now:
            stop += dt.timedelta(days=1)
        ends.append(start + (stop - now).total_seconds())
    return min(ends) if ends else float("inf")


def export(args, path: str) -> None:
    pre = preprocessor(args)
    net = build_net(args)
    ck = load_checkpoint(args, net, None)
    if ck is None:
        raise SystemExit(f"no checkpoint in {args.out}")
    clf = EBSDClassifier(backbone=args.backbone, pretrained=False, input_size=args.input_size,
                         static_background=False, dynamic_sigma=args.dynamic_sigma)
    clf.classes_ = CLASSES.copy()
    clf.preprocessor_ = pre
    clf.models_ = [net.eval()]
    data = make_eval_set(args, pre)
    scores = evaluate(net, data)
    # the history records the pretraining (patterns simulated, seconds); its evaluation is in log.jsonl
    clf.history_ = TrainingHistory(seconds=float(ck["elapsed_s"]), n_train=int(ck["seen"]))
    clf.save(path)
    print(f"wrote {path} ({Path(path).stat().st_size / 1e6:.2f} MB), step {ck['step']}: {json.dumps(scores)}")


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.export:
        return export(args, args.export)
    pre = preprocessor(args)
    torch.manual_seed(args.seed)
    net = build_net(args)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    rng = np.random.default_rng(args.seed)
    size = args.input_size
    buffer = {"x": np.zeros((args.buffer, size, size), np.uint8), "y": np.zeros(args.buffer, np.int64)}
    n_buffer, step, seen, elapsed = 0, 0, 0, 0.0
    ring_base = 0  # the buffer's write position is (seen - ring_base) % size
    ck = load_checkpoint(args, net, opt)
    if ck is not None:
        step, seen, elapsed = int(ck["step"]), int(ck["seen"]), float(ck["elapsed_s"])
        set_rng_state(rng, ck["rng"])
        torch.set_rng_state(ck["torch_rng"])
        if (Path(args.out) / "buffer.npz").exists():
            with np.load(Path(args.out) / "buffer.npz") as z:
                n_buffer = len(z["y"])
                buffer["x"][:n_buffer], buffer["y"][:n_buffer] = z["x"], z["y"]
        else:  # a committed checkpoint without its buffer: refill (not bit-identical then)
            ring_base = seen
            print("no buffer.npz: the replay buffer starts empty", flush=True)
        print(f"resuming at step {step} ({seen} patterns simulated, {elapsed / 60:.1f} min)", flush=True)
    data = make_eval_set(args, pre)
    if args.evaluate:
        print(json.dumps({"step": step, **evaluate(net, data)}))
        return
    sampler = S.StructureSampler("train", prototype_fraction=args.prototype_fraction, scattering=SCATTERING)
    noise = dict(S.NOISE_RANGES, counts=(max(args.min_counts, 1.0), S.NOISE_RANGES["counts"][1]))

    def new_entry(sg):
        session = S.sample_session(sampler.draw(int(sg), rng), rng, scattering=SCATTERING)
        return session, S.session_reflectors(session)

    if ck is not None and "pool" in ck:
        pool = pool_from_json(ck["pool"])
    else:
        pool = {int(sg): [new_entry(sg) for _ in range(args.pool)] for sg in CLASSES}
    start = time.perf_counter()
    end = deadline(args, start)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *a: stop.update(now=True))
    log = open(Path(args.out) / "log.jsonl", "a")
    t_sim = t_train = 0.0
    losses = []
    try:
        while step < args.max_steps and time.perf_counter() < end and not stop["now"]:
            t0 = time.perf_counter()
            renew = int(CLASSES[step % len(CLASSES)])
            pool[renew][int(rng.integers(0, args.pool))] = new_entry(renew)
            for _ in range(args.sessions_per_step):
                sg = int(CLASSES[rng.integers(0, len(CLASSES))])
                base, refl = pool[sg][int(rng.integers(0, args.pool))]
                session = S.sample_session(base.structure, rng, scattering=SCATTERING,  # new detector and noise
                                           acquisition=S.sample_acquisition(rng, noise))
                session = S.Session(base.structure, session.geometry, session.acquisition, base.kv,
                                    base.debye_waller, SCATTERING)
                x = pre.transform(S.simulate_session(session, args.session_size, rng, refl=refl), check=False)
                q = np.rint(x * 255).astype(np.uint8)
                pos = (np.arange(len(q)) + seen - ring_base) % args.buffer  # ring buffer
                buffer["x"][pos], buffer["y"][pos] = q, int(np.searchsorted(CLASSES, sg))
                n_buffer = min(args.buffer, n_buffer + len(q))
                seen += len(q)
            t1 = time.perf_counter()
            idx = rng.integers(0, n_buffer, args.batch_size)
            xb = buffer["x"][idx].astype(np.float32) / 255.0
            flip = rng.random(len(idx)) < 0.5
            xb[flip] = xb[flip][:, :, ::-1]
            logits = net(torch.from_numpy(np.ascontiguousarray(xb)).unsqueeze(1))
            loss = F.cross_entropy(logits, torch.from_numpy(buffer["y"][idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            step += 1
            t2 = time.perf_counter()
            t_sim += t1 - t0
            t_train += t2 - t1
            if step % args.checkpoint_every == 0:
                save_checkpoint(args, net, opt, step, rng, buffer, n_buffer, seen,
                                elapsed + time.perf_counter() - start, pool)
            if step % args.eval_every == 0:
                rec = {"step": step, "seen": seen, "loss": round(float(np.mean(losses)), 4),
                       "minutes": round((elapsed + time.perf_counter() - start) / 60, 2),
                       "sim_s": round(t_sim, 1), "train_s": round(t_train, 1),
                       "utc": dt.datetime.now(dt.timezone.utc).strftime("%H:%M"), **evaluate(net, data)}
                losses = []
                log.write(json.dumps(rec) + "\n")
                log.flush()
                print(json.dumps(rec), flush=True)
            elif step % 25 == 0:
                print(f"step {step} loss {np.mean(losses[-25:]):.3f} seen {seen} "
                      f"sim {t_sim:.0f}s train {t_train:.0f}s", flush=True)
    except KeyboardInterrupt:
        pass
    save_checkpoint(args, net, opt, step, rng, buffer, n_buffer, seen, elapsed + time.perf_counter() - start,
                    pool)
    rec = {"step": step, "seen": seen, "final": True,
           "minutes": round((elapsed + time.perf_counter() - start) / 60, 2), **evaluate(net, data)}
    log.write(json.dumps(rec) + "\n")
    log.close()
    print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()

"""Inference speed of DiffMIC against a plain timm forward and the reference scheme.

The reference DiffMIC code re-encodes the image with the denoiser's CNN at every
reverse step; skdiffmic encodes once and runs the reverse steps on the small
label head. This script times, per image, on the CPU by default:

* ``predict_proba`` of a fitted DiffMICClassifier at ``presets.SCRATCH``
  (its own denoiser encoder: DCG priors + one denoiser encoding + the DDIM
  steps on the head);
* one forward pass of a plain timm classifier of the same backbone;
* the reference scheme (priors, then a full denoiser forward at every step) at
  10 and at 100 steps, against ours at the same number of steps.

    python -m benchmarks.bench_inference --n-images 32 --repeats 2
    python -m benchmarks.bench_inference --backbone resnet18 --image-size 64
"""

from __future__ import annotations

import time

import timm
import torch

from skdiffmic import DiffMICClassifier, presets
from skdiffmic.datasets import make_lesions

from ._common import parser, reference_scheme


def per_image(fn, n_images, repeats):
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best / n_images


def main(argv=None):
    parse = parser(__doc__)
    parse.add_argument("--backbone", default=presets.SCRATCH["backbone"])
    parse.add_argument("--image-size", type=int, default=64)
    parse.add_argument("--n-images", type=int, default=64)
    parse.add_argument("--hidden-dim", type=int, nargs="+", default=[6144, 512])
    parse.add_argument("--repeats", type=int, default=3)
    args = parse.parse_args(argv)
    torch.manual_seed(0)
    n = args.n_images
    X, y = make_lesions(n, image_size=args.image_size, random_state=0)

    # In the memory format the estimators use (channels-last, on every device).
    plain = timm.create_model(args.backbone, num_classes=2).eval()
    plain = plain.to(memory_format=torch.channels_last)
    xt = torch.randn(n, 3, args.image_size, args.image_size)
    xt = xt.contiguous(memory_format=torch.channels_last)

    def plain_forward():
        with torch.inference_mode():
            for i in range(0, n, 32):
                plain(xt[i : i + 32])

    t_plain = per_image(plain_forward, n, args.repeats)
    rows = []
    for hidden in args.hidden_dim:
        config = {**presets.SCRATCH, "backbone": args.backbone, "hidden_dim": hidden}
        clf = DiffMICClassifier(
            **config,
            max_epochs=1,
            guidance_epochs=0,
            batch_size=32,
            device="cpu",
            random_state=0,
        ).fit(X, y)
        row = {"hidden_dim": hidden}
        row["predict_proba (10 DDIM steps)"] = per_image(
            lambda: clf.predict_proba(X), n, args.repeats
        )
        for steps in (10, 100):
            clf.set_params(n_inference_steps=steps)
            ours = per_image(lambda: clf.predict_proba(X), n, args.repeats)
            ref = per_image(
                lambda s=steps: reference_scheme(clf, X, s), n, args.repeats
            )
            row[f"ours {steps} steps"] = ours
            row[f"re-encode {steps} steps"] = ref
        rows.append(row)

    print(
        f"\nbackbone={args.backbone}, image_size={args.image_size}, "
        f"{n} images, batch 32, CPU threads={torch.get_num_threads()}"
    )
    print(f"plain timm {args.backbone} forward: {t_plain * 1e3:.2f} ms/image\n")
    header = (
        "hidden_dim",
        "predict_proba ms/img",
        "x plain forward",
        "speed-up vs re-encode @10",
        "speed-up vs re-encode @100",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        p = r["predict_proba (10 DDIM steps)"]
        print(
            f"| {r['hidden_dim']} | {p * 1e3:.2f} | {p / t_plain:.2f} | "
            f"{r['re-encode 10 steps'] / r['ours 10 steps']:.2f} | "
            f"{r['re-encode 100 steps'] / r['ours 100 steps']:.2f} |"
        )
    print("\nraw seconds per image:")
    for r in rows:
        print(
            {
                k: (round(v * 1e3, 3) if isinstance(v, float) else v)
                for k, v in r.items()
            }
        )


if __name__ == "__main__":
    main()

"""Readable RoI ops and NMS against torchvision's compiled CPU kernels, side by side in one run.

Workload (a realistic FPN level): features [2, 256, 200, 272] (an 800 x 1088 batch at stride 4),
1000 boxes, 7 x 7 output, sampling ratio 2, aligned; forward, and forward + backward. NMS on
4000 boxes. A second RoIAlign workload is a Shapes training step's box head: P2 of 8 images of
128 px ([8, 64, 32, 32]), 1280 boxes of 16 to 64 px, adaptive sampling, aligned. The two
implementations alternate, and each reports the median of its runs. A last line times ours on the
Shapes workload with PyTorch's own backward of ``embedding_bag`` in place of ``_WeightedBags``.

    python benchmarks/roi_ops.py [--repeats 5] [--json benchmarks/results/roi_ops.json]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision.ops as tvo

from maskrcnn_edu import boxes as B
from maskrcnn_edu import roi_ops

from report import write_report  # benchmarks/report.py


def make_workload(generator: torch.Generator):
    features = torch.randn(2, 256, 200, 272, generator=generator)
    k = 1000
    top_left = torch.rand(k, 2, generator=generator) * torch.tensor([1000.0, 760.0])
    size = torch.rand(k, 2, generator=generator) * 200 + 16
    image = torch.randint(0, 2, (k, 1), generator=generator).float()
    rois = torch.cat([image, top_left, top_left + size], dim=1)
    nms_top_left = torch.rand(4000, 2, generator=generator) * 800
    nms_sizes = torch.rand(4000, 2, generator=generator) * 200 + 10
    nms_boxes = torch.cat([nms_top_left, nms_top_left + nms_sizes], 1)
    nms_scores = torch.rand(4000, generator=generator)
    return features, rois, nms_boxes, nms_scores


def shapes_workload(generator: torch.Generator):
    """P2 of a Shapes batch (8 images of 128 px at stride 4) and a training step's 1280 sampled RoIs."""
    features = torch.randn(8, 64, 32, 32, generator=generator)
    k = 1280
    size = torch.rand(k, 2, generator=generator) * 48 + 16
    top_left = torch.rand(k, 2, generator=generator) * (128 - size)
    image = torch.randint(0, 8, (k, 1), generator=generator).float()
    return features, torch.cat([image, top_left, top_left + size], dim=1)


def time_ms(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def alternate(ours, theirs, repeats: int) -> tuple[float, float]:
    """Median milliseconds of each, measured in alternation after one warm-up call each."""
    ours(), theirs()
    ours_ms, theirs_ms = [], []
    for _ in range(repeats):
        ours_ms.append(time_ms(ours))
        theirs_ms.append(time_ms(theirs))
    return statistics.median(ours_ms), statistics.median(theirs_ms)


def forward_backward(op, features, *args):
    def run():
        x = features.detach().requires_grad_()
        op(x, *args).sum().backward()

    return run


def cases(features, rois, nms_boxes, nms_scores, shapes_features, shapes_rois) -> dict:
    """``{op: (ours, torchvision's)}``: each a function of no argument that runs the op once."""
    shapes_args = (shapes_rois, (7, 7), 0.25, -1, True)
    align_args = (rois, (7, 7), 0.25, 2, True)
    pool_args = (rois, (7, 7), 0.25)
    return {
        "roi_align forward": (lambda: roi_ops.roi_align(features, *align_args),
                              lambda: tvo.roi_align(features, *align_args)),
        "roi_align forward+backward": (
            forward_backward(roi_ops.roi_align, features, *align_args),
            forward_backward(tvo.roi_align, features, *align_args),
        ),
        "roi_align fwd+bwd, Shapes": (
            forward_backward(roi_ops.roi_align, shapes_features, *shapes_args),
            forward_backward(tvo.roi_align, shapes_features, *shapes_args),
        ),
        "roi_pool forward": (lambda: roi_ops.roi_pool(features, *pool_args),
                             lambda: tvo.roi_pool(features, *pool_args)),
        "roi_pool forward+backward": (
            forward_backward(roi_ops.roi_pool, features, *pool_args),
            forward_backward(tvo.roi_pool, features, *pool_args),
        ),
        "nms 4000 boxes @0.7": (lambda: B.nms(nms_boxes, nms_scores, 0.7),
                                lambda: tvo.nms(nms_boxes, nms_scores, 0.7)),
    }


def own_backward_row(shapes_features, shapes_rois, repeats: int) -> dict:
    """Ours on the Shapes workload again, with embedding_bag's own backward (what _WeightedBags replaced)."""
    with_own = forward_backward(roi_ops.roi_align, shapes_features, shapes_rois, (7, 7), 0.25, -1, True)

    def with_embedding_bag_backward():
        fast, roi_ops._weighted_bags = roi_ops._weighted_bags, roi_ops._embedding_bag_sum
        try:
            with_own()
        finally:
            roi_ops._weighted_bags = fast

    fast_ms, own_ms = alternate(with_own, with_embedding_bag_backward, repeats)
    print(f"Shapes roi_align fwd+bwd: {fast_ms:.1f} ms with _WeightedBags, {own_ms:.1f} ms with "
          f"embedding_bag's own backward ({own_ms / fast_ms:.2f}x)")
    return {"op": "roi_align fwd+bwd, Shapes, embedding_bag's own backward", "readable_ms": round(own_ms, 1),
            "with_weighted_bags_ms": round(fast_ms, 1), "ratio": round(own_ms / fast_ms, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default="benchmarks/results/roi_ops.json",
                        help="where to write the numbers")
    args = parser.parse_args()

    features, rois, nms_boxes, nms_scores = make_workload(torch.Generator().manual_seed(0))
    shapes_features, shapes_rois = shapes_workload(torch.Generator().manual_seed(1))
    results = []
    print(f"{'op':<28} {'readable ms':>12} {'torchvision ms':>15} {'ratio':>7}")
    workload = cases(features, rois, nms_boxes, nms_scores, shapes_features, shapes_rois)
    for name, (ours, theirs) in workload.items():
        ours_ms, theirs_ms = alternate(ours, theirs, args.repeats)
        ratio = ours_ms / theirs_ms
        results.append({"op": name, "readable_ms": round(ours_ms, 1), "torchvision_ms": round(theirs_ms, 1),
                        "ratio": round(ratio, 2)})
        print(f"{name:<28} {ours_ms:>12.1f} {theirs_ms:>15.1f} {ratio:>7.2f}")
    results.append(own_backward_row(shapes_features, shapes_rois, args.repeats))
    write_report(args.json, results, repeats=args.repeats,
                 workload="features [2,256,200,272], 1000 boxes, 7x7, sampling_ratio 2, aligned; nms on 4000 "
                          "boxes; Shapes: features [8,64,32,32], 1280 boxes of 16-64 px, 7x7, adaptive, "
                          "aligned")


if __name__ == "__main__":
    main()

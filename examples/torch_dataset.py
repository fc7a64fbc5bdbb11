"""Use a CIFAKE dataset from PyTorch: `with_format("torch")` and a DataLoader.

    python examples/torch_dataset.py --dataset DIR|REPO_ID [--split train] [--batch-size 64]

Trains a tiny linear probe for a few steps to show the tensors are ready to use:
images come as uint8 (N, 32, 32, 3) tensors, labels as int64 (FAKE=0, REAL=1).
"""

from __future__ import annotations

import argparse
import json


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--split", default="train")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=5)
    args = ap.parse_args(argv)

    import datasets
    import torch

    ds = datasets.load_dataset(args.dataset, split=args.split).select_columns(["image", "label"])
    ds = ds.with_format("torch")
    loader = torch.utils.data.DataLoader(
        ds, batch_size=args.batch_size, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    torch.manual_seed(0)
    probe = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(32 * 32 * 3, 1))
    optimizer = torch.optim.Adam(probe.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    losses = []
    for _ in range(args.epochs):
        for batch in loader:
            x = batch["image"].float() / 255  # uint8 (B, 32, 32, 3)
            y = batch["label"].float()
            loss = loss_fn(probe(x)[:, 0], y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    result = {
        "first_loss": losses[0],
        "last_loss": sum(losses[-3:]) / len(losses[-3:]),
        "batches": len(losses),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()

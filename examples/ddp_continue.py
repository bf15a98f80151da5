"""Continue training a cnn3d model in PyTorch with DistributedDataParallel: several GPUs, or
several CPU processes where there is no GPU.

    cargo run --release -- export --checkpoint runs/try/model.safetensors --torch exported
    cargo run --release -- data synth --out digits.h5
    pip install torch safetensors h5py
    torchrun --nproc_per_node 2 examples/ddp_continue.py --model exported --data digits.h5 --epochs 2

Every process imports the exported model.py, loads the weights strictly, turns the HDF5
volumes into the network's input with model.py's `preprocess` (as the cnn3d run did) and trains
on its shard of the training set (DistributedSampler); gradients are averaged across processes
by DDP. Rank 0 prints the test accuracy after each epoch and saves the weights to
MODEL/continued.safetensors with cnn3d's tensor names and input record, so that cnn3d reads
them back: `cnn3d eval --checkpoint exported/continued.safetensors --config <the run's config.toml>`.
"""

import argparse
import importlib.util
import os

import h5py
import numpy as np
import safetensors.torch
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset


def load_module(folder):
    spec = importlib.util.spec_from_file_location("exported_model", os.path.join(folder, "model.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def split(module, path, name):
    with h5py.File(path, "r") as f:
        x = module.preprocess(np.asarray(f[f"X_{name}"]))
        y = torch.as_tensor(np.asarray(f[f"y_{name}"]), dtype=torch.int64)
    return TensorDataset(x, y)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="the folder `cnn3d export --torch` wrote")
    p.add_argument("--data", required=True, help="HDF5 with X_train, y_train, X_test, y_test")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=100, help="per process")
    p.add_argument("--lr", type=float, default=0.001)
    args = p.parse_args()

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
    torch.manual_seed(0)

    module = load_module(args.model)
    model = module.Model()
    model.load_state_dict(safetensors.torch.load_file(os.path.join(args.model, "model.safetensors")), strict=True)
    model.to(device)
    ddp = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)

    train = split(module, args.data, "train")
    test = split(module, args.data, "test")
    sampler = DistributedSampler(train, num_replicas=world, rank=rank, shuffle=True, seed=0)
    loader = DataLoader(train, batch_size=args.batch_size, sampler=sampler, drop_last=True)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=args.lr)
    loss_fn = torch.nn.CrossEntropyLoss()

    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        ddp.train()
        for x, y in loader:
            optimizer.zero_grad()
            loss = loss_fn(ddp(x.to(device)), y.to(device))
            loss.backward()
            optimizer.step()
        if rank == 0:
            model.eval()
            with torch.no_grad():
                logits = model(test.tensors[0].to(device))
            accuracy = (logits.argmax(1).cpu() == test.tensors[1]).float().mean().item()
            print(f"epoch {epoch + 1}/{args.epochs}: last batch loss {loss.item():.4f}, test accuracy {accuracy:.1%} ({world} processes)")
        dist.barrier()

    if rank == 0:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        metadata = {"colormap": module.COLORMAP, "article_reshape": str(module.ARTICLE_RESHAPE).lower()}
        out = os.path.join(args.model, "continued.safetensors")
        safetensors.torch.save_file(state, out, metadata=metadata)
        print(f"wrote {out}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

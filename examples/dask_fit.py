"""Train a network on data that lives on Dask workers: mlpgrad.distributed.fit on a LocalCluster.

    python examples/dask_fit.py                                   # a LocalCluster of 2 worker processes
    python examples/dask_fit.py --scheduler tcp://scheduler:8786  # an existing cluster

A regression target y = sin(x_0) + x_1 / 2 over 200,000 rows of 8 features, generated on the workers (so
the driver never holds the data), then Adam on mini-batches of 16,384 rows and L-BFGS on full-data gradients.
"""

from __future__ import annotations

import argparse
import logging
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheduler", help="address of an existing scheduler instead of a LocalCluster")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=8)
    args = parser.parse_args()

    import dask.array as da
    from dask.distributed import Client, LocalCluster

    import mlpgrad
    from mlpgrad import distributed as md
    from mlpgrad import optim

    if args.scheduler:
        cluster, client = None, Client(args.scheduler)
    else:
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR)
        client = Client(cluster)
    client.register_plugin(md.NumThreads(1))  # one mlpgrad thread per worker process: 2 processes, 2 cores

    # The data is made where it will be used; with files, e.g. dask.dataframe.read_parquet(...).to_dask_array().
    X = da.random.default_rng(0).uniform(-2, 2, (args.rows, 8), chunks=(-(-args.rows // args.partitions), -1))
    y = da.sin(X[:, 0]) + X[:, 1] / 2
    X, y = client.persist([X, y])

    for seed, name in enumerate(("adam", "lbfgs")):
        net = mlpgrad.MLP.random([8, 32, 32], activation="tanh", seed=seed)  # with biases and an output bias
        before, _ = md.gradient(net, X, y, loss="mse", client=client)
        started = time.perf_counter()
        if name == "adam":
            history = md.fit(net, X, y, loss="mse", optimizer=optim.Adam(net, lr=0.02), epochs=8, batch_size=16384,
                             client=client, seed=0, progress=False)
            steps = 8 * -(-args.rows // 16384)
        else:
            history = md.fit(net, X, y, loss="mse", optimizer="lbfgs", epochs=20, client=client, progress=False)
            steps = len(history.train_loss)
        seconds = time.perf_counter() - started
        after, _ = md.gradient(net, X, y, loss="mse", client=client)
        unit = "step" if name == "adam" else "iteration"
        print(f"{name:5s}: full-data loss {before:.4f} -> {after:.4f} in {seconds:.1f} s "
              f"({len(history.train_loss)} epochs, {seconds / steps * 1e3:.0f} ms per {unit})")
    client.close()
    if cluster is not None:
        cluster.close()


if __name__ == "__main__":
    main()

"""The cost of a full-data gradient on a Dask cluster against the same gradient in one local process.

    python examples/dask_gradient.py                        # 2e6 x 32 float32, LocalCluster of 2 processes
    python examples/dask_gradient.py --rows 200000 --repeats 3
    python examples/dask_gradient.py --scheduler tcp://scheduler:8786   # an existing cluster

The data is generated on the workers and persisted there; the local process holds a copy of the same
arrays. Both sides run the same per-partition code (``mlpgrad.distributed``'s batch passes over blocks
of rows), so the ratio is the price of distributing it: scattering the network, scheduling one task per
partition, the tree reduction and the transfer of the result. The timings are medians of interleaved runs.

It also prints the scheduler's share (the wall time in which no worker computed: wall time minus the
busiest worker's compute time, from Dask's task stream) and the constants of a scaling model.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import statistics
import time

import numpy as np


def arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--hidden", default="64,64", help="hidden widths, comma-separated (default 64,64)")
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (one thread each)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--scheduler", help="address of an existing scheduler instead of a LocalCluster")
    return parser.parse_args()


def network(features, hidden, dtype):
    import mlpgrad

    rng = np.random.default_rng(0)
    widths = [features] + hidden
    weights = [(rng.standard_normal((widths[t + 1], widths[t])) * np.sqrt(2 / widths[t])).astype(dtype)
               for t in range(len(hidden))]
    return mlpgrad.MLP(weights, (rng.standard_normal(widths[-1]) / np.sqrt(widths[-1])).astype(dtype), "relu")


def busiest_worker_compute(stream) -> float:
    """The largest total compute time of one worker thread in a task stream (Dask's get_task_stream data)."""
    busy = {}
    for task in stream:
        for part in task["startstops"]:
            if part["action"] == "compute":
                key = (task["worker"], task.get("thread"))
                busy[key] = busy.get(key, 0.0) + part["stop"] - part["start"]
    return max(busy.values())


def compute_times(stream, prefix: str):
    return [part["stop"] - part["start"] for task in stream if str(task["key"]).startswith(prefix)
            for part in task["startstops"] if part["action"] == "compute"]


def median_time(call, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    args = arguments()
    import dask.array as da
    from dask.distributed import Client, LocalCluster, get_task_stream

    import mlpgrad
    from mlpgrad import losses
    from mlpgrad import distributed as md
    from mlpgrad.distributed import _worker
    from mlpgrad.distributed._gradient import FANIN

    hidden = [int(k) for k in args.hidden.split(",")]
    dtype = np.dtype(args.dtype)
    if args.scheduler:
        cluster, client = None, Client(args.scheduler)
    else:
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster)
    client.register_plugin(md.NumThreads(1))  # one mlpgrad thread per worker process
    all_threads = mlpgrad.get_num_threads()     # this process's default: the CPUs it may run on
    net = network(args.features, hidden, dtype)
    rows_per_partition = -(-args.rows // args.partitions)
    X = da.random.default_rng(1).standard_normal((args.rows, args.features), chunks=(rows_per_partition, -1),
                                                  dtype=dtype)
    y = da.sin(X[:, 0]).astype(dtype)
    X, y = client.persist([X, y])
    client.wait_for_workers(len(client.scheduler_info()["workers"]))
    X_local, y_local = client.compute([X, y], sync=True)  # the same data in this process

    def on_cluster():
        return md.gradient(net, X, y, loss="mse", client=client)

    def in_process(threads):
        mlpgrad.set_num_threads(threads)
        return _worker._sums(net, X_local, y_local, None, None, losses.mse)

    distributed_loss, _ = on_cluster()
    local = in_process(1)
    assert math.isclose(distributed_loss, local.loss / local.weight, rel_tol=1e-5), (distributed_loss, local.loss)

    cluster_times, local_times, threaded_times, shares, partition_times, add_times = [], [], [], [], [], []
    for _ in range(args.repeats):  # interleaved, so that the machine's load hits all alike
        local_times.append(median_time(lambda: in_process(1), 1))
        threaded_times.append(median_time(lambda: in_process(all_threads), 1))
        with get_task_stream(client) as stream:
            cluster_times.append(median_time(on_cluster, 1))
        shares.append(1 - busiest_worker_compute(stream.data) / cluster_times[-1])
        partition_times += compute_times(stream.data, "partition_sums")
        add_times += compute_times(stream.data, "add")

    # The fixed cost of a call: the same network over tiny partitions (2 and args.partitions of 8 rows).
    def tiny(partitions):
        Xs = da.from_array(np.ones((8 * partitions, args.features), dtype), chunks=(8, -1))
        ys = da.from_array(np.ones(8 * partitions, dtype), chunks=8)
        Xs, ys = client.persist([Xs, ys])
        md.gradient(net, Xs, ys, client=client)
        return median_time(lambda: md.gradient(net, Xs, ys, client=client), max(args.repeats, 15))

    fixed_two, fixed_many = tiny(2), tiny(args.partitions)
    workers = len(client.scheduler_info()["workers"])
    # Per extra partition, per worker: the tiny partitions' overhead is paid on the workers, in parallel.
    per_partition = (fixed_many - fixed_two) * workers / (args.partitions - 2) if args.partitions > 2 else 0.0
    cluster_median, local_median = statistics.median(cluster_times), statistics.median(local_times)
    per_row_local = local_median / args.rows
    per_row_worker = statistics.median(partition_times) / rows_per_partition
    print(f"load average {os.getloadavg()}, {os.cpu_count()} CPUs, {workers} workers x 1 thread")
    print(f"network {args.features}-{args.hidden.replace(',', '-')}-1 relu {dtype}, {args.rows:,} rows in "
          f"{args.partitions} partitions of {rows_per_partition:,}, medians of {args.repeats}")
    print(f"one local process (1 thread): {local_median * 1e3:9.1f} ms ({per_row_local * 1e9:.0f} ns per row)")
    threaded_median = statistics.median(threaded_times)
    print(f"one local process ({all_threads} threads): {threaded_median * 1e3:8.1f} ms")
    print(f"LocalCluster gradient:        {cluster_median * 1e3:9.1f} ms   ratio {cluster_median / local_median:.2f}x "
          f"(1 thread), {cluster_median / threaded_median:.2f}x ({all_threads} threads)")
    print(f"scheduler's share (no worker computing): {statistics.median(shares):.1%} of the cluster's wall time")
    print(f"per partition task: {statistics.median(partition_times) * 1e3:.1f} ms ({per_row_worker * 1e9:.0f} ns per "
          f"row on a worker); one reduction add: {statistics.median(add_times) * 1e3:.2f} ms")
    print(f"fixed cost of a call: {fixed_two * 1e3:.1f} ms with 2 tiny partitions, {fixed_many * 1e3:.1f} ms with "
          f"{args.partitions} ({per_partition * 1e3:.2f} ms per extra partition and worker)")
    print(f"model (W workers, P = 8 W partitions of N / P rows, {FANIN} partial sums per addition):")
    print(f"  T(W) = {fixed_two * 1e3:.1f} ms + {per_partition * 1e3:.2f} ms x (P - 2) / W "
          f"+ N x {per_row_local * 1e9:.0f} ns / W")
    for w in (1, 2, 8, 32, 128):
        p = 8 * w
        model = fixed_two + per_partition * (p - 2) / w + args.rows * per_row_local / w
        print(f"  W = {w:4d}: {model * 1e3:8.1f} ms, speed-up {local_median / model:5.1f}x over the local process "
              f"({math.ceil(math.log(p, FANIN))} reduction levels)")
    client.close()
    if cluster is not None:
        cluster.close()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A moor client in Python: create a pod, list it, watch it change, delete it.

Generate the stubs first:  ./generate.sh gen
Then, against `moor up` (TLS) with a token (`moor token create --user NAME --group G`):
    PYTHONPATH=gen ./example.py --server 127.0.0.1:6443 --ca ~/.moor/data/pki/ca.crt --token TOKEN
or with a client certificate (--cert CERT --key KEY instead of --token), or, against an
apiserver started with --insecure, with none of these.
Prints one line per step and exits non-zero if anything is not as expected.
"""
import argparse
import queue
import sys
import threading
import time

import grpc

from moor.core.v1 import pod_pb2, services_pb2_grpc
from moor.meta.v1 import meta_pb2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="127.0.0.1:6443", help="apiserver host:port")
    parser.add_argument("--name", default="py-demo", help="name of the pod to create")
    parser.add_argument("--ca", help="the cluster CA certificate (PEM file); without it, plain text")
    parser.add_argument("--cert", help="client certificate (PEM file) signed by the cluster CA")
    parser.add_argument("--key", help="private key (PEM file) of --cert")
    parser.add_argument("--token", help="bearer token (moor token create --user NAME); needs --ca")
    args = parser.parse_args()
    if args.token and not args.ca:
        parser.error("--token is only sent over TLS: give --ca as well")

    if args.ca:
        def read(path):
            with open(path, "rb") as f:
                return f.read()
        credentials = grpc.ssl_channel_credentials(
            root_certificates=read(args.ca),
            private_key=read(args.key) if args.key else None,
            certificate_chain=read(args.cert) if args.cert else None,
        )
        if args.token:
            credentials = grpc.composite_channel_credentials(
                credentials, grpc.access_token_call_credentials(args.token))
        channel = grpc.secure_channel(args.server, credentials)
    else:
        channel = grpc.insecure_channel(args.server)
    pods = services_pb2_grpc.PodsStub(channel)

    pod = pod_pb2.Pod(
        metadata=meta_pb2.ObjectMeta(name=args.name, labels={"app": "demo"}),
        spec=pod_pb2.PodSpec(containers=[pod_pb2.Container(name="web", image="moor/echo:0.1")]),
    )
    created = pods.Create(pod)
    print(f"created pod/{created.metadata.name} uid={created.metadata.uid} "
          f"resourceVersion={created.metadata.resource_version}")

    listed = pods.List(meta_pb2.ListRequest(namespace="default", label_selector="app=demo"))
    names = [p.metadata.name for p in listed.items]
    if args.name not in names:
        print(f"listed pods {names}, expected {args.name}", file=sys.stderr)
        return 1
    print(f"listed {len(names)} pod(s) at resourceVersion {listed.metadata.resource_version}")

    events: "queue.Queue" = queue.Queue()
    request = meta_pb2.WatchRequest(namespace="default", resource_version=listed.metadata.resource_version)
    stream = pods.Watch(request)

    def follow() -> None:
        try:
            for event in stream:
                events.put(event)
        except grpc.RpcError:
            pass  # cancelled at the end

    threading.Thread(target=follow, daemon=True).start()

    current = pods.Get(meta_pb2.GetRequest(namespace="default", name=args.name))
    current.metadata.labels["tier"] = "frontend"
    updated = pods.Update(current)
    print(f"labelled pod/{args.name} tier=frontend at resourceVersion {updated.metadata.resource_version}")

    # Others change the pod too (the scheduler binds it, its node reports its
    # status): wait for the event that carries our label.
    deadline = time.monotonic() + 20
    while True:
        try:
            event = events.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            print("no watch event with tier=frontend within 20 s", file=sys.stderr)
            return 1
        kind = meta_pb2.EventType.Name(event.type)
        label = event.object.metadata.labels.get("tier")
        if kind == "MODIFIED" and label == "frontend":
            break
    stream.cancel()
    print(f"watched {kind} pod/{event.object.metadata.name} tier={label}")

    # Gone at once (no grace period), so the example can run again.
    pods.Delete(meta_pb2.DeleteRequest(namespace="default", name=args.name, grace_period_seconds=0))
    print(f"deleted pod/{args.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The offline runner leaves no open event loop behind on the threads that run invokes
(pulumi's MockMonitor makes one per executor thread; collected at exit it printed an
ignored "Invalid file descriptor: -1" traceback after a plan that stopped on bad settings)."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

from google.protobuf import struct_pb2
from pulumi.runtime.proto import resource_pb2

from components.cli.offline import OfflineMocks, RecordingMonitor


def test_invoke_on_a_worker_thread_closes_its_event_loop():
    monitor = RecordingMonitor(OfflineMocks("us-east-1"))
    request = resource_pb2.ResourceInvokeRequest(tok="aws:index/getRegion:getRegion", args=struct_pb2.Struct())

    def invoke_then_look():
        response = monitor.Invoke(request)
        try:
            loop = asyncio.get_event_loop()
        except RuntimeError:
            return response, None
        return response, loop

    with ThreadPoolExecutor(max_workers=1) as pool:
        for _ in range(2):  # the same thread again gets a working loop
            response, left = pool.submit(invoke_then_look).result()
            assert response.__getattribute__("return")["name"] == "us-east-1"
            assert left is None, "an event loop was left set (and open) on the invoke's thread"

"""The Triton Python-backend model that ``edgeseg serve`` writes as ``model.py``: an edgeseg Session behind
Triton. It runs inside Triton's stub process, never imported by edgeseg itself.

Each ``execute`` gets the requests Triton's dynamic batcher gathered. Requests whose tensors have the same shape
(frames or images of one size) are concatenated into one ``Session.run`` and the outputs split back by each
request's batch size; a batch that fails is retried request by request, so one bad request cannot fail the others.
"""
import json
import os
import site
import sys

# The stub's interpreter is isolated (no PYTHONPATH, no site-packages of a venv): edgeseg serve passes its own
# sys.path, and the libpython of its own interpreter through LD_LIBRARY_PATH (edgeseg.deploy.serve).
if os.environ.get("EDGESEG_SERVE_PYTHON", sys.version) != sys.version:
    raise RuntimeError(f"Triton's Python stub runs Python {sys.version.split()[0]}, edgeseg serve runs "
                       f"{os.environ['EDGESEG_SERVE_PYTHON'].split()[0]}: the stub loaded another libpython")
for _folder in os.environ.get("EDGESEG_SERVE_SYS_PATH", "").split(os.pathsep):
    if _folder and _folder not in sys.path:
        site.addsitedir(_folder)

import numpy as np  # noqa: E402  (after the paths above)

# The stub's pybind11 was built against NumPy 1.x: with NumPy 2 its as_numpy() reads zeros and Tensor(name, array)
# sends empty data (the array-descriptor layout changed). DLPack carries the buffers both ways instead; the
# stub's DLPack capsule deleter then reports every consumed input capsule as an unraisable ValueError (the data
# is right, nothing leaks), which is filtered out of the log here.
_default_hook = sys.unraisablehook


def _quiet_consumed_capsules(info):
    if not (isinstance(info.exc_value, ValueError) and "PyCapsule_GetPointer called with incorrect name" in str(info.exc_value)):
        _default_hook(info)


sys.unraisablehook = _quiet_consumed_capsules


class TritonPythonModel:
    def initialize(self, args):
        import triton_python_backend_utils as pb_utils  # exists only inside Triton's stub

        from edgeseg.runtime import open_session

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        if params["edgeseg_backend"] == "tensorrt":
            self.session = open_session(params["edgeseg_model"], "tensorrt")
        else:
            self.session = open_session(params["edgeseg_model"], "onnxruntime", threads=int(params["edgeseg_threads"]))
        self.input = self.session.meta.input_name
        self.outputs = [o["name"] for o in config["output"]]
        self.batched = int(config.get("max_batch_size", 0)) > 0
        self.max_bytes = int(params["edgeseg_max_request_bytes"])

    def execute(self, requests):
        responses = [None] * len(requests)
        groups: dict = {}
        for i, request in enumerate(requests):
            x = np.from_dlpack(self.pb.get_input_tensor_by_name(request, self.input))
            if x.nbytes > self.max_bytes:  # this server build has no HTTP body limit: refuse before running
                responses[i] = self.pb.InferenceResponse(output_tensors=[], error=self.pb.TritonError(
                    f"input of {x.nbytes / 1e6:.0f} MB is over the server's {self.max_bytes / 1e6:.0f} MB limit "
                    "(edgeseg serve --max-request-mb)"))
                continue
            key = (x.shape[1:], x.dtype.str) if self.batched else i  # an unbatched graph runs one request at a time
            groups.setdefault(key, []).append((i, x))
        for items in groups.values():
            if not self._run(items, responses) and len(items) > 1:
                for item in items:
                    self._run([item], responses)
        return responses

    def _run(self, items, responses) -> bool:
        try:
            batch = items[0][1] if len(items) == 1 else np.concatenate([x for _, x in items])
            out = self.session.run(batch)
            start = 0
            for i, x in items:
                stop = start + len(x) if self.batched else None
                tensors = [self.pb.Tensor.from_dlpack(name, np.ascontiguousarray(out[name][start:stop]))
                           for name in self.outputs]
                responses[i] = self.pb.InferenceResponse(output_tensors=tensors)
                start = stop or 0
            return True
        except Exception as e:  # a request the model cannot take: an error response, and the server keeps serving
            error = self.pb.TritonError(f"{type(e).__name__}: {e}"[:2000])
            for i, _ in items:
                responses[i] = self.pb.InferenceResponse(output_tensors=[], error=error)
            return False

"""The options of `imgcls serve`, as fields (imgcls.options): the CLI builds its flags from these."""
from __future__ import annotations

from dataclasses import dataclass

from imgcls.limits import REDUCE_ABOVE_PIXELS
from imgcls.options import device_option, option


@dataclass
class ServeOptions:
    host: str = option("127.0.0.1", "address to listen on; the default is reachable from this machine only "
                                    "(0.0.0.0 opens it to the network, with no authentication)")
    port: int = option(8000, "TCP port (0: any free port, printed at start)", ge=0, le=65535)
    max_upload_mb: float = option(20.0, "largest accepted file, in MB (a bigger one is refused with 413)", gt=0)
    max_files: int = option(16, "most files in one request", ge=1)
    max_megapixels: float = option(256.0, "most megapixels the images of one request may take to decode and resize, "
                                          "all together (16 photos of 16 MP; a JPEG above "
                                          f"{REDUCE_ABOVE_PIXELS / 1e6:.1f} MP counts at the reduced size it decodes "
                                          "to); more is refused with 413", gt=0)
    workers: int = option(1, "inference threads (each forward pass already uses every core: more helps only "
                             "with several cores per request)", ge=1)
    queue: int = option(8, "requests that may wait for a worker; beyond that the answer is 429 with Retry-After",
                        ge=0)
    topk: int = option(5, "classes returned per image (at most the number of classes)", ge=1)
    device: str = device_option()
    abstain: str | None = option(None, "answer \"unknown\" when the top probability is below P (0..1), or "
                                       "precision:Q: the threshold at which the val part's answers were Q precise "
                                       "(stored by train)", metavar="P|precision:Q")

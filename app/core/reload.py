"""``HOUSING_MODEL_POLL_S``: watch the artifacts folder and reload a new model by itself.

Every interval the watch looks at ``manifest.json`` (which ``python -m compile`` writes last,
atomically): when the file changed and names another compiled artifact than the one serving,
it reloads, as ``SIGHUP`` and the repository route do (``ModelRuntime.reload``, which logs the
outcome). A refused model is not retried until the manifest changes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from app.core.runtime import ModelRuntime, ReloadRefused
from modelspec.manifest import MANIFEST_FILE, ArtifactError, Manifest

logger = logging.getLogger("housing.reload")

Stamp = tuple[int, int] | None  # the manifest's (mtime_ns, size); None: no manifest


class ArtifactWatch:
    def __init__(self, runtime: ModelRuntime, interval_s: float) -> None:
        self.runtime = runtime
        self.interval_s = interval_s
        self.folder = runtime.settings.artifacts
        self._task: asyncio.Task[None] | None = None

    def _stamp(self) -> Stamp:
        try:
            st = os.stat(self.folder / MANIFEST_FILE)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="model-watch")
        logger.info(
            "watching %s for a new model every %.1fs", self.folder / MANIFEST_FILE, self.interval_s
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _watch(self) -> None:
        seen = self._stamp()
        while True:
            await asyncio.sleep(self.interval_s)  # a timer, not a synchronisation: polling
            stamp = self._stamp()
            if stamp == seen or stamp is None:
                continue
            seen = stamp
            if self._names_the_serving_model():
                continue
            logger.info("%s changed: reloading the model", MANIFEST_FILE)
            with contextlib.suppress(ReloadRefused):  # logged by the runtime, with the reason
                await self.runtime.reload()

    def _names_the_serving_model(self) -> bool:
        model = self.runtime.model
        try:
            compiled = Manifest.load(self.folder).compiled
        except (ArtifactError, OSError):
            return False  # let the reload say what is wrong with it
        serving = None if model is None else model.manifest.compiled
        return compiled is not None and serving is not None and compiled.sha256 == serving.sha256

"""Admission and micro-batching of ``srcrn serve``: how many requests are in, and how waiting
requests are predicted together. Torch-free."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi.concurrency import run_in_threadpool

from srcrn.data.metadata import NO_CONTEXT, ClinicalContext
from srcrn.serving.settings import ServeSettings


class Admission:
    """Requests in the service (waiting or being predicted), counted once their upload is in:
    at most ``concurrency * max_batch`` being predicted and ``queue`` more. An upload still
    arriving holds no slot, so slow clients cannot keep good requests out."""

    def __init__(self, settings: ServeSettings):
        """Room for ``concurrency * max_batch`` predicted and ``queue`` waiting requests."""
        self.capacity, self.admitted = settings.concurrency * settings.max_batch + settings.queue, 0

    def enter(self) -> bool:
        """Admit one request if there is room; False: answer it 503."""
        if self.admitted >= self.capacity:
            return False
        self.admitted += 1
        return True

    def leave(self) -> None:
        """A request admitted by ``enter`` has its answer."""
        self.admitted -= 1


class Batcher:
    """Micro-batching: each of ``concurrency`` workers takes every request waiting (up to
    ``max_batch``) and predicts them together with ``Pipeline.predict_many``. No request
    waits for a batch to fill: a worker takes what is there when it is free. Hand-written:
    the serving libraries that batch (Ray Serve, Triton, BentoML) each bring a server of
    their own; this is a queue and a loop."""

    def __init__(self, pipeline: Any, settings: ServeSettings):
        """A batcher of ``pipeline`` under ``settings`` (started with the service)."""
        self.pipeline, self.settings = pipeline, settings
        self.queue: asyncio.Queue[tuple[bytes, str, ClinicalContext, asyncio.Future[Any]]] | None = None
        self.workers: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start the workers (in the service's event loop, when it starts)."""
        self.queue = asyncio.Queue()
        self.workers = [asyncio.create_task(self._work()) for _ in range(self.settings.concurrency)]

    async def stop(self) -> None:
        """Cancel the workers (when the service stops)."""
        for worker in self.workers:
            worker.cancel()
        await asyncio.gather(*self.workers, return_exceptions=True)

    async def predict(self, content: bytes, image_id: str, context: ClinicalContext = NO_CONTEXT) -> Any:
        """The pipeline's answer for one uploaded image, predicted in a batch with those waiting.

        Args:
            content: the image file's bytes.
            image_id: its id in the answer.
            context: its clinical context.

        Returns:
            The ``PipelineResult``.

        Raises:
            SrcrnError: the image cannot be predicted (it fails alone).
        """
        assert self.queue is not None, "the batcher starts with the service"
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self.queue.put((content, image_id, context, future))
        return await future

    async def _work(self) -> None:
        assert self.queue is not None
        while True:
            items = [await self.queue.get()]
            while len(items) < self.settings.max_batch and not self.queue.empty():
                items.append(self.queue.get_nowait())
            outcomes = await run_in_threadpool(self._predict, [item[:3] for item in items])
            for (_, _, _, future), outcome in zip(items, outcomes):
                if future.done():  # the client went away
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    def _predict(self, items: list[tuple[bytes, str, ClinicalContext]]) -> list[Any]:
        try:  # a bad upload fails alone (predict_each); anything else fails every waiting request (500)
            return self.pipeline.predict_each(
                [item[0] for item in items], image_ids=[item[1] for item in items], contexts=[item[2] for item in items]
            )
        except Exception as error:
            return [error] * len(items)

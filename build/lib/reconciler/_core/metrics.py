"""The metrics seam: what the run queue and the API report as it happens. The daemon
injects a Prometheus recorder (reconciler.daemon.metrics); everything else gets NULL."""

from __future__ import annotations

from typing import Protocol


class Recorder(Protocol):
    def run_finished(self, task: str, success: bool, seconds: float) -> None:
        """A run recorded its event (an apply, or its failure)."""
        ...

    def api_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """An API request was answered; `route` is the route's template."""
        ...

    def source_pass(self, source: str, ok: bool, seconds: float) -> None:
        """A source was read and reconciled (`ok`), or could not be read (a failed fetch,
        a missing directory)."""
        ...

    def webhook(self, accepted: bool) -> None:
        """A webhook call was accepted (signed, for a known source) or rejected."""
        ...

    def task_gone(self, task: str) -> None:
        """The task was deleted: its series go (task names come and go for ever)."""
        ...


class NullRecorder:
    def run_finished(self, task: str, success: bool, seconds: float) -> None:
        pass

    def api_request(self, route: str, method: str, status: int, seconds: float) -> None:
        pass

    def source_pass(self, source: str, ok: bool, seconds: float) -> None:
        pass

    def webhook(self, accepted: bool) -> None:
        pass

    def task_gone(self, task: str) -> None:
        pass


NULL = NullRecorder()

"""A fair waiting line: round robin over users, first in first out within one user."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator


class FairQueue:
    """Job ids waiting to run; one user's many jobs never hold back another user's one.

    The next job comes from the user with the fewest running jobs (when the caller passes `load`),
    then the one served least recently (never served first), then the one waiting longest; within
    a user, first in first out. With every user backlogged this is plain round robin, and a
    newcomer's first job goes ahead of the second job of someone already served.
    """

    MEMORY = 10_000  # users whose last turn is remembered after their line empties

    def __init__(self) -> None:
        self._users: dict[int, deque[str]] = {}  # dict order: when each line started
        self._owner: dict[str, int] = {}
        self._served: dict[int, int] = {}  # user -> tick of their latest start
        self._tick = 0

    def __len__(self) -> int:
        return len(self._owner)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._owner

    def __iter__(self) -> Iterator[str]:
        """Job ids in the order they are expected to start."""
        positions = self.positions()
        return iter(sorted(positions, key=positions.__getitem__))

    def push(self, job_id: str, user_id: int, *, front: bool = False) -> None:
        """Add a job; `front` makes it the very next one (a retry after a worker crash)."""
        if job_id in self._owner:
            raise ValueError(f"job {job_id} is already queued")
        self._owner[job_id] = user_id
        line = self._users.setdefault(user_id, deque())
        if front:
            line.appendleft(job_id)
            self._served[user_id] = -1  # before anyone, even those never served
        else:
            line.append(job_id)

    def remove(self, job_id: str) -> bool:
        """Take a job out of the line; False if it was not there."""
        user_id = self._owner.pop(job_id, None)
        if user_id is None:
            return False
        line = self._users[user_id]
        line.remove(job_id)
        if not line:
            del self._users[user_id]
        return True

    def pop_next(
        self,
        eligible: Callable[[int], bool] | None = None,
        load: Callable[[int], int] | None = None,
    ) -> str | None:
        """The next job to start, skipping users for whom `eligible(user_id)` is False."""
        candidates = [u for u in self._users if eligible is None or eligible(u)]
        if not candidates:
            return None
        loads = {u: load(u) if load is not None else 0 for u in candidates}
        order = {u: i for i, u in enumerate(self._users)}
        user_id = min(candidates, key=lambda u: (loads[u], self._served.get(u, 0), order[u]))
        line = self._users[user_id]
        job_id = line.popleft()
        del self._owner[job_id]
        if not line:
            del self._users[user_id]
        self._tick += 1
        self._served.pop(user_id, None)
        self._served[user_id] = self._tick  # re-inserted: dict order is oldest turn first
        if len(self._served) > self.MEMORY:
            oldest = next((u for u in self._served if u not in self._users), None)
            self._served.pop(oldest, None)  # type: ignore[arg-type]
        return job_id

    def positions(self, load: Callable[[int], int] | None = None) -> dict[str, int]:
        """1-based expected start order of every waiting job, if nobody joins or finishes."""
        lines = {user: list(line) for user, line in self._users.items()}
        loads = {u: load(u) if load is not None else 0 for u in lines}
        served = {u: self._served.get(u, 0) for u in lines}
        order = {u: i for i, u in enumerate(lines)}
        taken = dict.fromkeys(lines, 0)
        tick = self._tick
        out: dict[str, int] = {}
        # Replays pop_next; O(jobs x users), fine for queues of hundreds.
        while lines:
            user = min(lines, key=lambda u: (loads[u], served[u], order[u]))
            out[lines[user][taken[user]]] = len(out) + 1
            taken[user] += 1
            tick += 1
            loads[user] += 1
            served[user] = tick
            if taken[user] == len(lines[user]):
                del lines[user]
        return out

"""Round robin over users, FIFO within a user, live positions."""

from __future__ import annotations

from nstbot.jobs.fairqueue import FairQueue


def drain(queue: FairQueue, eligible=None) -> list[str]:
    out = []
    while (job := queue.pop_next(eligible)) is not None:
        out.append(job)
    return out


def test_one_users_many_jobs_do_not_hold_back_another_users_one() -> None:
    q = FairQueue()
    for i in range(10):
        q.push(f"a{i}", user_id=1)
    q.push("b0", user_id=2)
    assert q.positions()["b0"] == 2
    assert drain(q)[:3] == ["a0", "b0", "a1"]


def test_round_robin_with_fifo_inside_each_user() -> None:
    q = FairQueue()
    for job, user in [("a0", 1), ("a1", 1), ("b0", 2), ("c0", 3), ("b1", 2), ("a2", 1)]:
        q.push(job, user)
    expected = ["a0", "b0", "c0", "a1", "b1", "a2"]
    assert list(q) == expected
    assert q.positions() == {job: i + 1 for i, job in enumerate(expected)}
    assert drain(q) == expected
    assert len(q) == 0


def test_a_newcomer_goes_before_the_next_job_of_a_user_already_served() -> None:
    q = FairQueue()
    q.push("a0", 1)
    q.push("a1", 1)
    assert q.pop_next() == "a0"
    q.push("b0", 2)
    assert list(q) == ["b0", "a1"]
    q.push("c0", 3)
    assert list(q) == ["b0", "c0", "a1"]


def test_positions_predict_the_pop_order() -> None:
    q = FairQueue()
    for i in range(7):
        q.push(f"j{i}", user_id=i % 3)
    predicted = sorted(q.positions(), key=q.positions().get)
    assert drain(q) == predicted


def test_remove_and_front() -> None:
    q = FairQueue()
    for job, user in [("a0", 1), ("a1", 1), ("b0", 2)]:
        q.push(job, user)
    assert q.remove("a0") and not q.remove("a0")
    assert "a0" not in q and "a1" in q
    q.push("b-retry", 2, front=True)
    assert list(q) == ["b-retry", "a1", "b0"]
    # User 2 has two jobs waiting, a1 is user 1's: seen in what each user's next turn pops.
    assert q.pop_next(lambda u: u == 2) == "b-retry" and q.pop_next(lambda u: u == 2) == "b0"
    assert q.pop_next(lambda u: u == 2) is None and q.pop_next(lambda u: u == 1) == "a1"


def test_ineligible_users_are_skipped_but_keep_their_turn() -> None:
    q = FairQueue()
    for job, user in [("a0", 1), ("b0", 2), ("a1", 1)]:
        q.push(job, user)
    assert q.pop_next(lambda user: user != 1) == "b0"
    assert q.pop_next(lambda user: user != 1) is None
    assert q.pop_next() == "a0"


def test_duplicate_push_is_an_error() -> None:
    q = FairQueue()
    q.push("a", 1)
    try:
        q.push("a", 2)
    except ValueError:
        pass
    else:
        raise AssertionError("expected ValueError")


def test_with_load_users_with_fewer_running_jobs_go_first() -> None:
    q = FairQueue()
    running = {1: 1, 2: 0}  # user 1's first job is running
    q.push("a1", 1)
    q.push("b0", 2)
    assert q.positions(running.get) == {"b0": 1, "a1": 2}
    assert q.pop_next(load=running.get) == "b0"


def test_positions_with_load_predict_pop_order() -> None:
    q = FairQueue()
    for i in range(9):
        q.push(f"j{i}", user_id=i % 4)
    running = {0: 2, 1: 0, 2: 1, 3: 0}
    positions = q.positions(running.get)
    predicted = sorted(positions, key=positions.get)
    order = []
    while (job := q.pop_next(load=running.get)) is not None:
        order.append(job)
        user = int(job[1:]) % 4
        running[user] += 1
    assert order == predicted


def test_plain_round_robin_and_zero_load_agree() -> None:
    q = FairQueue()
    for i in range(8):
        q.push(f"j{i}", user_id=i % 3 if i < 5 else 0)
    assert q.positions() == q.positions(lambda user: 0)

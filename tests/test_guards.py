"""Input limits, history trimming and rate limiting, as units."""

from core.guards import MessageLimits, RateLimiter, admit, message_problem, trim_history


def test_empty_and_whitespace_messages_are_refused_gently():
    for message in ("", "   ", "\n\t ", None, 42, ["hi"]):
        assert message_problem(message, MessageLimits(100)) == "Type a message first."


def test_oversized_messages_are_refused_with_the_numbers():
    assert message_problem("x" * 101, MessageLimits(100)) == (
        "Your message is 101 characters long; the limit is 100. Shorten it and send again."
    )
    assert message_problem("x" * 100, MessageLimits(100)) is None


def test_trimming_drops_the_oldest_turns_and_keeps_the_system_prompt_and_new_message():
    messages = [{"role": "system", "content": "S" * 10}]
    for i in range(5):
        messages += [{"role": "user", "content": f"u{i}" * 10}, {"role": "assistant", "content": f"a{i}" * 10}]
    messages.append({"role": "user", "content": "newest"})
    kept, dropped = trim_history(messages, 80)
    assert kept[0] == messages[0] and kept[-1] == messages[-1]
    assert kept[1]["role"] == "user"  # a conversation starts with the user
    assert sum(len(m["content"]) for m in kept) <= 80
    assert dropped == len(messages) - len(kept) > 0
    assert trim_history(messages, 10_000) == (messages, 0)


def test_the_newest_message_stays_even_when_it_alone_is_over_the_budget():
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "x" * 500}]
    assert trim_history(messages, 100) == (messages, 0)


def test_rate_limiter_allows_n_a_minute_per_key_then_says_how_long_to_wait():
    now = [1000.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    assert admit((limiter, "a")) == 0 and admit((limiter, "a")) == 0
    now[0] += 10
    assert admit((limiter, "a")) == 50.0  # the first message leaves the window in 50 s
    assert admit((limiter, "b")) == 0  # another key has its own budget
    now[0] += 50
    assert admit((limiter, "a")) == 0


def test_a_refused_message_counts_against_no_limiter():
    session, ip = RateLimiter(1), RateLimiter(2)
    assert admit((session, "s1"), (ip, "1.2.3.4")) == 0
    assert admit((session, "s1"), (ip, "1.2.3.4")) > 0  # the session is over its limit...
    assert admit((session, "s2"), (ip, "1.2.3.4")) == 0  # ...so the IP still has one message left


def test_a_zero_limit_is_off_and_idle_keys_are_forgotten():
    off = RateLimiter(0)
    assert all(admit((off, "k")) == 0 for _ in range(1000))
    now = [0.0]
    limiter = RateLimiter(5, clock=lambda: now[0])
    for i in range(10_001):
        admit((limiter, f"user{i}"))
    now[0] += 120
    admit((limiter, "late"))
    admit((limiter, "later"))
    assert len(limiter.sent) < 10  # memory stays bounded however many people come by

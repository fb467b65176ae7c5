"""The Telegram bot and delivery, end to end: the real aiogram client against a fake Bot API server
on 127.0.0.1, a real Postgres, and real job containers."""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterator

import docker
import pytest

from runner.scheduler import Scheduler
from runner.service import Jobs
from runner.settings import Settings
from runner.store import Database
from runner.telegram_part import TelegramService
from runner.threads import jobs_dir

from ..fakebotapi import FakeBotAPI
from .helpers import ROOT, RUNNER_CLI, cli_env, wait_for

USER = 1001
CHAT = 42
THREAD = f"telegram:{CHAT}"


@pytest.fixture
def api() -> Iterator[FakeBotAPI]:
    fake = FakeBotAPI().start()
    yield fake
    fake.stop()


@pytest.fixture
def tg(settings: Settings, api: FakeBotAPI) -> Settings:
    return settings.with_(telegram_bot_token=api.token, telegram_api_url=api.url,
                          telegram_allowed_users=frozenset({USER}), telegram_per_chat_interval=0.05,
                          telegram_per_second=1000.0, telegram_backoff_max=0.5, poll_interval=1.0)


@pytest.fixture
def tjobs(tg: Settings, db: Database) -> Jobs:
    return Jobs(tg, db)


@pytest.fixture
def service(tg: Settings, tjobs: Jobs) -> Iterator[TelegramService]:
    svc = TelegramService(tg, tjobs)
    svc.start()
    yield svc
    svc.stop()
    assert svc.error is None, svc.error


def queue(db: Database, chat: str, text: str, n: int = 1) -> None:
    with db.transaction() as conn:
        for i in range(n):
            conn.execute("INSERT INTO outbox (job_id, kind, thread_id, job_name, text, chat_id) "
                         "VALUES (NULL, 'message', %s, 'direct', %s, %s)",
                         (f"telegram:{chat}", text.format(i=i), chat))


def outbox(db: Database) -> list[dict]:
    return _rows(db, "SELECT * FROM outbox ORDER BY id")


def _rows(db: Database, sql: str) -> list[dict]:
    with db.transaction() as conn:
        return conn.execute(sql).fetchall()


def all_recorded_sent(db: Database, n: int, timeout: float = 30) -> None:
    """Wait until the outbox holds ``n`` messages and delivery has recorded every one as sent: from then
    on nothing more of them goes out, so what the fake received is final."""
    wait_for(lambda: [r["status"] for r in outbox(db)] == ["sent"] * n, timeout, f"{n} messages recorded as sent")


def handled(caplog: pytest.LogCaptureFixture, *updates: int, timeout: float = 20) -> None:
    """Wait until aiogram has finished handling each of ``updates``: its dispatcher logs an update's end
    after every middleware and handler returned, so after anything they sent went out."""
    def done() -> bool:
        ends = [r.getMessage() for r in list(caplog.records) if r.name == "aiogram.event"]
        return all(any(m.startswith(f"Update id={u} is ") for m in ends) for u in updates)
    wait_for(done, timeout, f"aiogram to finish handling updates {updates}")


# --- commands ---------------------------------------------------------------------------------------


def test_start_and_help_show_the_thread_id(service: TelegramService, api: FakeBotAPI) -> None:
    api.command(CHAT, USER, "/start")
    text = api.wait_for(lambda: [t for t in api.texts(CHAT) if "thread id is telegram:42" in t])[0]
    assert "/schedule" in text and "/jobs" in text
    assert "setMyCommands" in api.calls


def test_unlisted_user_gets_one_polite_refusal(service: TelegramService, api: FakeBotAPI,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    caplog.set_level(logging.INFO, logger="aiogram.event")
    updates = [api.command(77, 999, "/jobs") for _ in range(3)]
    handled(caplog, *updates)
    assert api.texts(77) == ["Sorry, this is a private bot and you are not on its list of users."]
    assert "refused an update from Telegram user 999" in caplog.text


def test_job_commands_end_to_end(service: TelegramService, api: FakeBotAPI, tjobs: Jobs) -> None:
    job = tjobs.schedule_job(thread_id=THREAD, name="report", script_text="print('hi')\n", at="in 2 hours",
                             every="daily 9am")
    jid = job["id"]
    api.command(CHAT, USER, "/tz Europe/Berlin")
    api.wait_for(lambda: any("Time zone set to Europe/Berlin" in t for t in api.texts(CHAT)))
    api.command(CHAT, USER, "/jobs")
    api.wait_for(lambda: any(f"#{jid} report | next:" in t and "daily 9am" in t for t in api.texts(CHAT)))
    api.command(CHAT, USER, f"/job {jid}")
    card = api.wait_for(lambda: [s for s in api.sent if s.text and s.text.startswith(f"Job {jid}: report")])[0]
    buttons = [b["callback_data"] for row in card.reply_markup["inline_keyboard"] for b in row]
    assert buttons == [f"job:run:{jid}", f"job:pause:{jid}", f"job:cancel:{jid}"]
    api.command(CHAT, USER, f"/pause {jid}")
    api.wait_for(lambda: any(f"Job report (#{jid}) is paused." in t for t in api.texts(CHAT)))
    assert tjobs.get_job(jid)["paused"] is True
    api.command(CHAT, USER, f"/resume {jid}")
    api.wait_for(lambda: any(f"Job report (#{jid}) is resumed." in t for t in api.texts(CHAT)))
    api.press(CHAT, USER, f"job:run:{jid}")
    wait_for(lambda: tjobs.get_job(jid)["due_time"] <= __import__("datetime").datetime.now(
        __import__("datetime").UTC), 10, "run now to move the job to now")
    api.command(CHAT, USER, f"/cancel {jid}")
    api.wait_for(lambda: any(f"Job report (#{jid}) is cancelled." in t for t in api.texts(CHAT)))
    api.command(CHAT, USER, "/job")
    api.wait_for(lambda: any("Give a job id: /job <id>" in t for t in api.texts(CHAT)))


def test_logs_and_run_of_a_finished_job(service: TelegramService, api: FakeBotAPI, tjobs: Jobs, tg: Settings,
                                        db: Database, docker_client: docker.DockerClient) -> None:
    job = tjobs.schedule_job(thread_id=THREAD, name="boom", script_text="print('about to fail')\n1/0\n", at="now")
    Scheduler(tg, db, docker_client).run(burst=True)
    api.command(CHAT, USER, f"/logs {job['id']}")
    text = api.wait_for(lambda: [t for t in api.texts(CHAT) if t.startswith("Job boom (#")])[0]
    assert "failed, exit code 1" in text and "reason: exit code 1: ZeroDivisionError" in text and "about to fail" in text
    api.command(CHAT, USER, f"/run {job['id']}")
    api.wait_for(lambda: any("Job boom will run now" in t for t in api.texts(CHAT)))
    assert [r["status"] for r in tjobs.list_jobs(thread_id=THREAD)] == ["pending", "failed"]


def test_another_chats_job_is_no_such_job(service: TelegramService, api: FakeBotAPI, tjobs: Jobs) -> None:
    theirs = tjobs.schedule_job(thread_id="telegram:555", name="secret", script_text="print(1)\n", at="in 1 hour")
    for cmd in ("/job", "/logs", "/cancel", "/run", "/pause"):
        api.command(CHAT, USER, f"{cmd} {theirs['id']}")
    api.wait_for(lambda: len([t for t in api.texts(CHAT) if t == f"No such job: {theirs['id']}"]) == 5)
    press = api.press(CHAT, USER, f"job:cancel:{theirs['id']}")
    # The press is answered (so it was handled) with the same refusal, and nothing else happened.
    assert api.answer_to(press) == {"callback_query_id": press, "text": f"No such job: {theirs['id']}",
                                    "show_alert": True}
    assert tjobs.get_job(theirs["id"])["status"] == "pending"
    assert not any("secret" in t for t in api.texts(CHAT))


def test_schedule_an_uploaded_file(service: TelegramService, api: FakeBotAPI, tjobs: Jobs, tg: Settings) -> None:
    api.upload(CHAT, USER, "/schedule daily 9am", "Price_Check.py", b"print('checking')\n")
    api.wait_for(lambda: any(t.startswith("Scheduled job price_check") and "then daily 9am" in t
                             for t in api.texts(CHAT)))
    rows = tjobs.list_jobs(thread_id=THREAD)
    assert rows[0]["name"] == "price_check" and rows[0]["recurrence"] == "daily 9am"
    assert (jobs_dir(tg.data_dir, THREAD) / "price_check.py").read_bytes() == b"print('checking')\n"
    api.upload(CHAT, USER, "/schedule tomorrow 9am", "broken.py", b"if x\n  pass\n")
    api.wait_for(lambda: any("Not scheduled: broken.py has a syntax error at line 1" in t for t in api.texts(CHAT)))
    api.upload(CHAT, USER, "/schedule sometimes", "x.py", b"pass\n")
    api.wait_for(lambda: any("Not scheduled: could not understand the time 'sometimes'" in t for t in api.texts(CHAT)))
    assert len(tjobs.list_jobs(thread_id=THREAD)) == 1


# --- delivery ---------------------------------------------------------------------------------------


def test_job_message_and_attachments_are_delivered_once(service: TelegramService, api: FakeBotAPI, tjobs: Jobs,
                                                        tg: Settings, db: Database,
                                                        docker_client: docker.DockerClient) -> None:
    script = ("import os\nos.makedirs('jobs/chart_attachments', exist_ok=True)\n"
              "open('jobs/chart_attachments/plot.png', 'wb').write(b'\\x89PNG fake')\n"
              "open('jobs/chart_attachments/data.csv', 'w').write('a,b\\n1,2\\n')\n"
              "open('jobs/chart_message.txt', 'w').write('*not bold* <b>nor this</b>')\n")
    tjobs.schedule_job(thread_id=THREAD, name="chart", script_text=script, at="now")
    Scheduler(tg, db, docker_client).run(burst=True)
    all_recorded_sent(db, 1)
    sent = [(s.method, s.text, s.filename) for s in api.sent if s.chat_id == "42"]
    assert sent == [("sendMessage", "*not bold* <b>nor this</b>", None), ("sendDocument", None, "data.csv"),
                    ("sendPhoto", None, "plot.png")]
    assert not (jobs_dir(tg.data_dir, THREAD) / "chart_attachments").exists()


def test_long_text_is_split_on_lines_in_order(service: TelegramService, api: FakeBotAPI, db: Database) -> None:
    text = "\n".join(f"line {i:04d} " + "x" * 90 for i in range(100))  # ~10,000 characters
    queue(db, "42", text)
    parts = api.wait_for(lambda: api.texts(42) if sum(len(t) for t in api.texts(42)) >= len(text) - 10 else None)
    assert len(parts) == 3 and all(len(p) <= 4096 for p in parts)
    assert "\n".join(parts) == text


def test_429_is_honoured(service: TelegramService, api: FakeBotAPI, db: Database) -> None:
    api.rate_limit_next, api.retry_after = 1, 1
    t0 = time.monotonic()
    queue(db, "42", "after a 429")
    api.wait_for(lambda: api.texts(42))
    assert time.monotonic() - t0 >= 1.0
    all_recorded_sent(db, 1)
    assert api.texts(42) == ["after a 429"]
    assert api.calls.count("sendMessage") == 2, "the refused send, then the one after retry_after"


def test_an_answer_that_is_not_json_is_retried_and_the_chat_goes_on(service: TelegramService, api: FakeBotAPI,
                                                                    db: Database) -> None:
    """A proxy's error page instead of the Bot API's JSON killed the chat's worker: nothing more was sent."""
    api.garbled_next = 1
    queue(db, "42", "after a garbled answer {i}", n=2)
    api.wait_for(lambda: len(api.texts(42)) == 2, timeout=30)
    wait_for(lambda: {r["status"] for r in outbox(db)} == {"sent"}, 30, "both recorded as sent")
    assert api.texts(42) == [f"after a garbled answer {i}" for i in range(2)]


def test_outage_then_delivery_without_loss_or_duplicate(service: TelegramService, api: FakeBotAPI,
                                                        db: Database) -> None:
    """A five-minute outage in compressed time: 3 s of 502s with backoff capped at 0.5 s."""
    api.down_until = time.monotonic() + 3
    queue(db, "42", "during the outage {i}", n=5)
    queue(db, "43", "other chat {i}", n=5)
    all_recorded_sent(db, 10)
    assert api.texts(42) == [f"during the outage {i}" for i in range(5)]
    assert api.texts(43) == [f"other chat {i}" for i in range(5)]
    assert all(s.at >= api.down_until for s in api.sent)
    assert max(r["attempts"] for r in outbox(db)) > 1


def test_blocked_chat_fails_for_good_and_others_go_on(service: TelegramService, api: FakeBotAPI,
                                                      db: Database) -> None:
    api.blocked.add("66")
    api.missing.add("67")
    queue(db, "66", "to a blocked chat")
    queue(db, "67", "to a missing chat")
    queue(db, "42", "to a fine chat")
    api.wait_for(lambda: api.texts(42))
    wait_for(lambda: {r["status"] for r in outbox(db)} == {"sent", "failed"}
             and sum(r["status"] == "failed" for r in outbox(db)) == 2, 15, "permanent failures")
    failed = {r["chat_id"]: r["last_error"] for r in outbox(db) if r["status"] == "failed"}
    assert failed == {"66": "Telegram refused: Forbidden: bot was blocked by the user",
                      "67": "Telegram refused: Bad Request: chat not found"}
    assert api.calls.count("sendMessage") == 3, "a permanent error is not retried"


def test_migrated_group_is_followed(service: TelegramService, api: FakeBotAPI, db: Database, tjobs: Jobs) -> None:
    api.migrated["-500"] = "-100500"
    queue(db, "-500", "to the old group")
    api.wait_for(lambda: api.texts(-100500))
    assert api.texts(-100500) == ["to the old group"]
    rows = _rows(db, "SELECT chat_id FROM threads WHERE thread_id = 'telegram:-500'")
    assert rows == [{"chat_id": "-100500"}]


def test_1000_messages_to_50_chats(service: TelegramService, api: FakeBotAPI, db: Database, tg: Settings) -> None:
    for chat in range(50):
        queue(db, str(2000 + chat), f"chat {2000 + chat} message {{i}}", n=20)
    all_recorded_sent(db, 1000, timeout=120)
    by_chat: dict[str, list] = defaultdict(list)
    for s in api.sent:
        by_chat[s.chat_id].append(s)
    assert len(api.sent) == 1000 and len(by_chat) == 50
    assert Counter(s.text for s in api.sent).most_common(1)[0][1] == 1, "no duplicates"
    for chat, sent in by_chat.items():
        assert [s.text for s in sent] == [f"chat {chat} message {i}" for i in range(20)], "in order"
        gaps = [b.at - a.at for a, b in zip(sent, sent[1:], strict=False)]
        assert min(gaps) >= tg.telegram_per_chat_interval * 0.9, "the per-chat rate is respected"


def test_restart_resumes_without_duplicates(tg: Settings, tjobs: Jobs, api: FakeBotAPI, db: Database) -> None:
    # A runner died mid-message: the first of three parts went out, then the lease ran out.
    text = "\n".join(f"row {i:04d} " + "y" * 90 for i in range(100))
    queue(db, "42", text)
    queue(db, "42", "the next message")
    with db.transaction() as conn:
        conn.execute("UPDATE outbox SET status = 'sending', parts_sent = 1, lease_owner = 'dead', "
                     "lease_expires_at = now() - interval '1 second' WHERE text = %s", (text,))
    svc = TelegramService(tg, tjobs, polling=False)
    svc.start()
    try:
        all_recorded_sent(db, 2)
    finally:
        svc.stop()
    # Each row is 99 characters and a newline: a part holds 40 rows (3,999 of the 4,096 characters a
    # message may have), so the message was rows 0-39, 40-79 and 80-99, and the first is not sent again.
    rows = text.split("\n")
    assert api.texts(42) == ["\n".join(rows[40:80]), "\n".join(rows[80:]), "the next message"]


def test_failure_is_told_once_per_streak(tg: Settings, tjobs: Jobs, db: Database,
                                         docker_client: docker.DockerClient) -> None:
    job = tjobs.schedule_job(thread_id=THREAD, name="flaky", at="now", every="hourly",
                             script_text="import os\nif os.path.exists('jobs/ok'):\n    print('fine')\nelse:\n    1/0\n")
    d = jobs_dir(tg.data_dir, THREAD)

    def run_next() -> None:
        with db.transaction() as conn:
            conn.execute("UPDATE scheduled_jobs SET due_time = now() WHERE series_id = %s AND status = 'pending'",
                         (job["series_id"],))
        Scheduler(tg, db, docker_client).run(burst=True)

    Scheduler(tg, db, docker_client).run(burst=True)  # fails: told
    run_next()  # fails again: not told
    (d / "ok").write_text("")
    run_next()  # succeeds
    (d / "ok").unlink()
    run_next()  # fails: told again
    notices = [r["text"] for r in outbox(db) if r["kind"] == "failure"]
    assert notices == ["Job flaky failed: exit code 1: ZeroDivisionError: division by zero"] * 2


def test_token_never_logged(service: TelegramService, api: FakeBotAPI, db: Database,
                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    api.down_until = time.monotonic() + 1.5
    queue(db, "42", "x")
    api.wait_for(lambda: api.texts(42), timeout=20)
    assert api.token not in caplog.text
    assert all(api.token not in (r["last_error"] or "") for r in outbox(db))


def test_runner_up_burst_delivers_through_telegram(api: FakeBotAPI, tjobs: Jobs, tg: Settings) -> None:
    """The command line wiring: `runner up --burst` with a bot token sends the job's message to Telegram."""
    import subprocess

    tjobs.schedule_job(thread_id=THREAD, name="hello", at="now",
                       script_text="open('jobs/hello_message.txt', 'w').write('hello via telegram')\n")
    env = cli_env(tg, TELEGRAM_BOT_TOKEN=api.token, TELEGRAM_API_URL=api.url, TELEGRAM_ALLOWED_USERS=str(USER))
    r = subprocess.run([*RUNNER_CLI, "up", "--burst", "--no-build"], env=env, cwd=ROOT, capture_output=True,
                       text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Messages go to Telegram via http://127.0.0.1:" in r.stdout
    assert api.texts(CHAT) == ["hello via telegram"]
    assert api.token not in r.stdout + r.stderr


def test_a_slow_chat_does_not_hold_up_the_others(service: TelegramService, api: FakeBotAPI, db: Database) -> None:
    api.slow_chats["90"] = 3.0  # every send to chat 90 takes 3 s
    queue(db, "90", "slow {i}", n=3)
    queue(db, "91", "fast {i}", n=5)
    t0 = time.monotonic()
    api.wait_for(lambda: len(api.texts(91)) == 5, timeout=20)
    assert time.monotonic() - t0 < 3.0, "chat 91 was not held up by chat 90"
    assert len(api.texts(90)) <= 1
    api.wait_for(lambda: len(api.texts(90)) == 3, timeout=30)

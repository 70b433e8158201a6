"""Alert e-mail as a manager reads it: subject and body in the branch's language,
delivered to a real local SMTP server (aiosmtpd)."""

from __future__ import annotations

import email
import email.policy
from typing import Any

from test_server_robots import payload

from lobbywatch.server.config import SmtpSink
from lobbywatch.server.notify import SmtpNotifier


def test_alert_mail_in_the_branch_language(smtp_server: tuple[int, list[Any]]) -> None:
    port, received = smtp_server
    cfg = SmtpSink.model_validate(
        {"host": "127.0.0.1", "port": port, "from": "lw@bank.example", "to": ["m@bank.example"]}
    )
    SmtpNotifier("mail", cfg).send(payload(1, "zh_CN"))
    SmtpNotifier("mail", cfg).send(payload(2, "en"))
    zh, en = (email.message_from_bytes(e.content, policy=email.policy.default) for e in received)
    assert zh["Subject"] == "[lobbywatch] W1 预警：Harbour，Hall"
    body = zh.get_content().replace("\r\n", "\n")
    assert body.startswith(
        "W1 预警：Harbour，Hall\n\n"
        "预计等候 9分00秒，阈值 10分00秒；5 人在等候。\n"
        "开放柜台 2 个（配置值）。\n"
        "再开一个柜台，预计等候可降至约 6分00秒。\n\n"
        "https://board.example/board/branch?id=b1\n"
    )
    assert en["Subject"] == "[lobbywatch] W1 warning: Harbour, Hall"
    assert (
        "One more counter would bring the predicted wait to about 6 min 00 s." in en.get_content()
    )

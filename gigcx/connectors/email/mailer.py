"""Sending one e-mail over SMTP (aiosmtplib), with each failure sorted into "try again
later" and "give up": a 5xx refusal of the recipient or the message is final, anything else
(the server down, a 4xx, a timeout, refused credentials) is worth another try."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from gigcx.config import EmailSettings
from gigcx.escalation.redaction import redact


class SendFailed(Exception):
    """The e-mail did not go out; `final` when trying again cannot help (a 5xx for this
    recipient or message). The message names no address."""

    def __init__(self, reason: str, *, final: bool) -> None:
        super().__init__(reason)
        self.final = final


class Mailer:
    """One brand's SMTP server, as `email:` configures it."""

    def __init__(self, settings: EmailSettings) -> None:
        self.settings = settings

    async def send(self, message: EmailMessage) -> None:
        """Send `message`; SendFailed (final or not) when it did not go out."""
        try:
            await aiosmtplib.send(message, **self._connection())
        except aiosmtplib.SMTPRecipientsRefused as refused:
            codes = [r.code for r in refused.recipients]
            final = all(500 <= code < 600 for code in codes)
            raise SendFailed(_said(codes[0] if codes else 0, refused), final=final) from None
        except aiosmtplib.SMTPRecipientRefused as refused:
            raise SendFailed(_said(refused.code, refused), final=refused.code >= 500) from None
        except aiosmtplib.SMTPDataError as refused:
            raise SendFailed(_said(refused.code, refused), final=refused.code >= 500) from None
        except aiosmtplib.SMTPAuthenticationError as refused:
            raise SendFailed(
                f"{_said(refused.code, refused)}: check email.smtp_username and "
                "GIGCX_EMAIL__SMTP_PASSWORD",
                final=False,
            ) from None
        except aiosmtplib.SMTPSenderRefused as refused:
            # Our own address refused: a setting to fix, not this customer's problem.
            raise SendFailed(
                f"{_said(refused.code, refused)}: check email.from_address", final=False
            ) from None
        except aiosmtplib.SMTPResponseException as refused:
            raise SendFailed(_said(refused.code, refused), final=False) from None
        except (aiosmtplib.SMTPException, OSError) as error:
            where = f"{self.settings.smtp_host}:{self.settings.smtp_port}"
            raise SendFailed(
                f"could not reach the SMTP server {where} ({type(error).__name__}: "
                f"{redact(str(error))})",
                final=False,
            ) from None

    async def check(self) -> list[str]:
        """What is wrong with the SMTP setup (connect, TLS, login), sending nothing."""
        client = aiosmtplib.SMTP(**self._connection())
        try:
            await client.connect()
            await client.quit()
        except (aiosmtplib.SMTPException, OSError) as error:
            where = f"{self.settings.smtp_host}:{self.settings.smtp_port}"
            return [
                f"the SMTP server {where} cannot be used ({type(error).__name__}: "
                f"{redact(str(error))}): check email.smtp_host, smtp_port, smtp_tls, "
                "smtp_starttls and the login"
            ]
        return []

    def _connection(self) -> dict[str, object]:
        s = self.settings
        return {
            "hostname": s.smtp_host,
            "port": s.smtp_port,
            "username": s.smtp_username,
            "password": None if s.smtp_password is None else s.smtp_password.get_secret_value(),
            "use_tls": s.smtp_tls,
            "start_tls": s.smtp_starttls,
            "timeout": s.smtp_timeout_seconds,
        }


def _said(code: int, error: Exception) -> str:
    # The server's words often repeat the address ("<bob@x>: mailbox unknown"): masked.
    words = getattr(error, "message", "") or str(error)
    return f"the SMTP server answered {code}: {redact(str(words))[:300]}"

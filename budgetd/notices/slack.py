"""Posting to Slack with slack-sdk: an incoming webhook (one fixed channel)
or a bot token with chat.postMessage. The SDK retries rate limits (honouring
Retry-After) and connection errors; what is left is ours to classify."""

from __future__ import annotations

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from ..config.schema import SlackConfig


class DeliveryError(Exception):
    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent  # a 4xx other than 429: trying again will not help


def _classify(status: int, detail: str) -> DeliveryError:
    permanent = 400 <= status < 500 and status != 429
    return DeliveryError(f"slack answered {status}: {detail}", permanent=permanent)


class SlackSender:
    def __init__(self, config: SlackConfig) -> None:
        handlers = [AsyncRateLimitErrorRetryHandler(max_retry_count=2),
                    AsyncConnectionErrorRetryHandler(max_retry_count=1)]
        self._channel = config.channel
        self._webhook = AsyncWebhookClient(config.webhook_url, timeout=10, retry_handlers=handlers) \
            if config.webhook_url else None
        self._web = AsyncWebClient(token=config.bot_token, base_url=config.api_url, timeout=10,
                                   retry_handlers=handlers) if config.bot_token else None

    async def send(self, text: str, blocks: list[dict]) -> None:
        try:
            if self._webhook is not None:
                response = await self._webhook.send(text=text, blocks=blocks)
                if response.status_code != 200:
                    raise _classify(response.status_code, response.body)
            else:
                # The config has a webhook, or a bot token with a channel.
                assert self._web is not None and self._channel is not None
                await self._web.chat_postMessage(channel=self._channel, text=text, blocks=blocks)
        except SlackApiError as err:
            status = err.response.status_code
            # chat.postMessage answers 200 {"ok": false, "error": ...} for bad channels, tokens, blocks.
            raise _classify(status if status != 200 else 400, str(err.response.get("error"))) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            raise DeliveryError(f"slack unreachable: {type(err).__name__}: {err}", permanent=False) from None

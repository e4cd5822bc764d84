"""The official clients talking to an in-process gateway: no server, no socket.

``InProcessGateway`` runs the ASGI app on an event loop in a thread of its own,
starts its model service, and hands out httpx transports that call the app
directly. Streams stream, and closing one early stops the generation, as over
a socket. The host name in the URLs is never resolved; it must be a local name
(``localhost``), because the gateway checks the Host header as it does on a
loopback port.

Run it with ``python docs/examples/in_process.py``: it makes a model store in a
temporary directory with the tiny demo model, and prints three answers.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import anthropic
import httpx2
import ollama
import openai

from gateway_core_adapters.asgi import create_app
from gateway_core_adapters.asgi.inprocess import InProcessGateway
from gateway_core_adapters.demo_model import write_demo_model
from gateway_core_adapters.settings import ServerSettings


def main(store: Path) -> None:
    app = create_app(ServerSettings(models=store / "models", context_length=2048))
    with InProcessGateway(app) as gateway:
        client = ollama.Client(
            host="http://localhost", transport=gateway.httpx_transport()
        )
        write_demo_model(store / "demo.gguf")
        digest = client.create_blob(store / "demo.gguf")
        client.create(model="demo", files={"demo.gguf": digest})

        chunks = client.chat(
            model="demo",
            messages=[{"role": "user", "content": "Hello"}],
            options={"num_predict": 8, "seed": 1},
            stream=True,
        )
        # The demo model's weights are random: its words are noise, so repr().
        print("ollama:", repr("".join(chunk.message.content or "" for chunk in chunks)))

        http = httpx2.Client(transport=gateway.httpx2_transport())
        gpt = openai.OpenAI(
            base_url="http://localhost/v1", api_key="-", http_client=http
        )
        completion = gpt.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "Hi"}], max_tokens=8
        )
        print("openai:", repr(completion.choices[0].message.content))

        claude = anthropic.Anthropic(
            base_url="http://localhost", api_key="-", http_client=http
        )
        message = claude.messages.create(
            model="demo", max_tokens=8, messages=[{"role": "user", "content": "Hi"}]
        )
        print("anthropic:", message.stop_reason, message.usage.output_tokens, "tokens")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as directory:
        main(Path(directory))

"""G2: the official OpenAI Python SDK, pointed at the gateway by `base_url` alone.

The gateway runs against morpheus-router-sim; faults are switched through the simulator's
control endpoint to check that each error status reaches the SDK as its usual exception class.
"""

import io
import json
import os
import uuid
import wave

import httpx
import openai
import pytest

GATEWAY = os.environ["GATEWAY_URL"]
SIM = os.environ["SIM_URL"]
MODEL = "llama-3.3-70b"
EMBEDDER = "text-embedding-bge-m3"
SPEAKER = "tts-kokoro"
LISTENER = "whisper-1"


@pytest.fixture(scope="module")
def api_key():
    email = f"sdk-{uuid.uuid4().hex}@example.com"
    password = "correct horse battery"
    with httpx.Client(base_url=GATEWAY, timeout=30) as http:
        http.post("/api/v1/auth/register", json={"email": email, "password": password}).raise_for_status()
        token = http.post("/api/v1/auth/login", json={"email": email, "password": password}).json()["access_token"]
        key = http.post("/api/v1/auth/keys", json={"name": "sdk"}, headers={"Authorization": f"Bearer {token}"}).json()["key"]
        http.put("/api/v1/automation/settings", json={"is_enabled": True}, headers={"Authorization": f"Bearer {key}"}).raise_for_status()
    return key


@pytest.fixture
def client(api_key):
    # max_retries=0: each test sees the gateway's first answer.
    return openai.OpenAI(api_key=api_key, base_url=f"{GATEWAY}/api/v1", max_retries=0)


@pytest.fixture
def fault():
    def set_fault(route, kind, times=1):
        httpx.post(f"{SIM}/__sim/faults", json={"route": route, "kind": kind, "times": times}).raise_for_status()

    yield set_fault
    httpx.delete(f"{SIM}/__sim/faults").raise_for_status()


def test_models_list(client):
    ids = [m.id for m in client.models.list()]
    assert MODEL in ids
    assert "retired-model" not in ids


def test_chat_without_streaming(client):
    completion = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hello sdk"}])
    assert completion.model == MODEL
    assert completion.choices[0].message.content == "Echo: hello sdk"
    assert completion.usage.total_tokens > 0


def test_chat_streaming_deltas_rebuild_the_answer(client):
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "stream via the sdk"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage:
            usage = chunk.usage
    assert text.strip() == "Echo: stream via the sdk"
    assert usage is not None and usage.completion_tokens > 0


def test_tool_call(client):
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}]
    completion = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "please lookup the weather"}], tools=tools
    )
    call = completion.choices[0].message.tool_calls[0]
    assert call.function.name == "lookup"
    assert json.loads(call.function.arguments)["query"]
    assert completion.choices[0].finish_reason == "tool_calls"


def test_embeddings_sdk_default_base64_and_floats_agree(client):
    # The SDK asks for base64 unless told otherwise and decodes it itself.
    result = client.embeddings.create(model=EMBEDDER, input=["hello sdk", "another text"])
    assert result.model == EMBEDDER
    assert [d.index for d in result.data] == [0, 1]
    assert all(len(d.embedding) > 0 and isinstance(d.embedding[0], float) for d in result.data)
    assert result.usage.prompt_tokens > 0
    floats = client.embeddings.create(model=EMBEDDER, input="hello sdk", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(result.data[0].embedding, rel=1e-6)


def test_chat_with_an_embedding_model_is_a_bad_request(client):
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=EMBEDDER, messages=[{"role": "user", "content": "hi"}])
    assert raised.value.code == "model_type_mismatch"


def test_chat_and_embeddings_through_a_plain_provider(client):
    completion = client.chat.completions.create(model="provider-llama", messages=[{"role": "user", "content": "via the provider"}])
    assert completion.model == "provider-llama"
    assert completion.choices[0].message.content == "Echo: via the provider"
    stream = client.chat.completions.create(
        model="provider-llama", messages=[{"role": "user", "content": "streamed via the provider"}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text.strip() == "Echo: streamed via the provider"
    result = client.embeddings.create(model="provider-embedder", input=["one", "two"])
    assert result.model == "provider-embedder"
    assert [d.index for d in result.data] == [0, 1]
    assert len(result.data[0].embedding) > 0


def wav_bytes(seconds):
    """A WAV file of silence made here: 16 kHz, mono, 16-bit."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x00\x00" * int(16000 * seconds))
    return buffer.getvalue()


@pytest.mark.parametrize("model", [LISTENER, "provider-ears"])
def test_audio_transcriptions(client, model):
    # Through the marketplace and through the plain provider.
    transcript = client.audio.transcriptions.create(model=model, file=("speech.wav", wav_bytes(1.5), "audio/wav"))
    assert transcript.text == "Transcribed audio of 1.50 seconds."
    text = client.audio.transcriptions.create(
        model=model, file=("speech.wav", wav_bytes(0.5), "audio/wav"), response_format="text"
    )
    assert text.strip() == "Transcribed audio of 0.50 seconds."
    verbose = client.audio.transcriptions.create(
        model=model, file=("speech.wav", wav_bytes(2), "audio/wav"), response_format="verbose_json"
    )
    assert verbose.duration == pytest.approx(2.0)


@pytest.mark.parametrize("model", [SPEAKER, "provider-voice"])
def test_audio_speech(client, model):
    speech = client.audio.speech.create(model=model, voice="af_alloy", input="Hello from the SDK.", response_format="wav")
    audio = speech.read()
    with wave.open(io.BytesIO(audio), "rb") as w:
        assert w.getnchannels() == 1 and w.getnframes() > 0
    mp3 = client.audio.speech.create(model=model, voice="af_alloy", input="Hi.")
    assert mp3.response.headers["content-type"] == "audio/mpeg"
    assert len(mp3.read()) > 0


def test_speech_with_a_transcription_model_is_a_bad_request(client):
    with pytest.raises(openai.BadRequestError) as raised:
        client.audio.speech.create(model=LISTENER, voice="af_alloy", input="Hi.")
    assert raised.value.code == "model_type_mismatch"


def test_bad_key_is_an_authentication_error():
    bad = openai.OpenAI(api_key="sk-not-a-real-key", base_url=f"{GATEWAY}/api/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])


def test_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="gpt-3.5-turbo", messages=[{"role": "user", "content": "x"}])
    assert raised.value.code == "model_not_found"


def test_over_a_cap_is_a_bad_request(client):
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=10_000_000)
    assert raised.value.code == "max_tokens_exceeded"


def test_upstream_rate_limit_is_a_rate_limit_error(client, fault):
    fault("chat", {"type": "status", "status": 429, "body": '{"error":"too many requests"}', "content_type": None})
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])


def test_upstream_failure_is_a_5xx_status_error(client, fault):
    fault("chat", {"type": "status", "status": 500, "body": '{"error":"provider exploded"}', "content_type": None})
    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert raised.value.status_code == 502

#!/usr/bin/env python3
"""Renders the chat templates in ../shared/data/templates exactly as Hugging Face transformers
does (`render_jinja_template`: jinja2's ImmutableSandboxedEnvironment with trim_blocks and
lstrip_blocks, HF's tojson / raise_exception / strftime_now, reasoning-field aliasing) for
conversations with system, user, assistant and tool messages, declared tools, and
add_generation_prompt true and false.

HF's sandbox is immutable, so the Kimi K2 Instruct/Thinking templates, which queue tool-call
ids with `list.append`/`list.pop`, raise SecurityError on any conversation with tool calls.
Such cases record HF's error and, as `expected_mutable`, the text the same environment renders
with jinja2's ordinary (mutable) SandboxedEnvironment, which is what kiln reproduces.

Run: /work/refenv/bin/python tests/reference/make_template_fixtures.py
Writes tests/fixtures/templates/cases.json: the inputs and the expected text of each case.
"""

import json
import pathlib

import jinja2
import jinja2.sandbox
import transformers
from transformers.utils import chat_template_utils
from transformers.utils.chat_template_utils import render_jinja_template

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEMPLATES = ROOT.parent / "shared/data/templates"
OUT = ROOT / "tests/fixtures/templates/cases.json"

# What apply_chat_template passes from Kimi's special_tokens_map.
SPECIAL = {"bos_token": "[BOS]", "eos_token": "[EOS]", "unk_token": "[UNK]", "pad_token": "[PAD]"}

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city — «quoted» \"names\" too",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name, e.g. 北京"},
                    "unit": {"type": "string", "enum": ["c", "f"], "default": None},
                    "days": {"type": "integer", "minimum": 1, "maximum": 7.5},
                },
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {"name": "search", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}},
    },
]

SYSTEM = {"role": "system", "content": "You are a helpful assistant provided by Moonshot-AI."}

CONVERSATIONS = {
    "system_user": [SYSTEM, {"role": "user", "content": "Is 123 a prime?"}],
    "no_system": [{"role": "user", "content": "Hello!\nTwo lines, tabs\tand 中文."}],
    "multi_turn": [
        SYSTEM,
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke about \"quotes\" & <tags>."},
    ],
    "tool_calls": [
        SYSTEM,
        {"role": "user", "content": "Weather in Beijing and Paris?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": {"city": "北京", "days": 2, "x": 1.5, "ok": True, "n": None}},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "{\"temp\": 21, \"sky\": \"晴\"}"},
        {"role": "tool", "tool_call_id": "call_2", "name": "get_weather", "content": "18C, rain"},
        {"role": "assistant", "content": "Beijing: 21°, sunny. Paris: 18°, rain."},
        {"role": "user", "content": "Thanks"},
    ],
    "tool_call_last": [
        {"role": "user", "content": "Search for kiln"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "search", "arguments": {"q": "kiln \\ \"rust\"\n"}}}],
        },
        {"role": "tool", "tool_call_id": "c", "content": "no results"},
    ],
    "reasoning_and_parts": [
        SYSTEM,
        {"role": "user", "content": [{"type": "text", "text": "Describe "}, {"type": "image", "image": "x.png"}, {"type": "text", "text": "this."}]},
        {"role": "assistant", "content": "A cat.", "reasoning_content": "Looks like a cat."},
        {"role": "user", "content": "Sure?"},
        {"role": "assistant", "content": "Yes.", "reasoning_content": "Whiskers."},
    ],
    "named_user": [SYSTEM, {"role": "user", "name": "alice", "content": "hi"}, {"role": "assistant", "content": None}],
}


def render(template, messages, tools, add_generation_prompt):
    out = render_jinja_template(
        conversations=[messages],
        tools=tools,
        chat_template=template,
        add_generation_prompt=add_generation_prompt,
        **SPECIAL,
    )
    rendered = out[0] if isinstance(out, tuple) else out
    return rendered[0] if isinstance(rendered, list) else rendered


def render_mutable(template, messages, tools, add_generation_prompt):
    immutable = chat_template_utils.ImmutableSandboxedEnvironment
    chat_template_utils.ImmutableSandboxedEnvironment = jinja2.sandbox.SandboxedEnvironment
    chat_template_utils._compile_jinja_template.cache_clear()
    try:
        return render(template, messages, tools, add_generation_prompt)
    finally:
        chat_template_utils.ImmutableSandboxedEnvironment = immutable
        chat_template_utils._compile_jinja_template.cache_clear()


def main():
    cases = []
    for path in sorted(TEMPLATES.glob("*.jinja")):
        template = path.read_text(encoding="utf-8")
        for conv_name, messages in CONVERSATIONS.items():
            for tools in (None, TOOLS):
                if tools is not None and conv_name not in ("system_user", "tool_calls", "tool_call_last"):
                    continue
                for agp in (True, False):
                    case = {
                        "template": path.name,
                        "conversation": conv_name,
                        "tools": tools,
                        "add_generation_prompt": agp,
                    }
                    try:
                        case["expected"] = render(template, messages, tools, agp)
                    except jinja2.exceptions.TemplateError as e:
                        case["error"] = f"{type(e).__name__}: {e}"
                        case["expected_mutable"] = render_mutable(template, messages, tools, agp)
                    cases.append(case)
    doc = {
        "generator": f"transformers {transformers.__version__}, jinja2 {jinja2.__version__}",
        "special_tokens": SPECIAL,
        "conversations": CONVERSATIONS,
        "cases": cases,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    errors = sum("error" in c for c in cases)
    print(f"{len(cases)} cases ({errors} raise) -> {OUT}")


if __name__ == "__main__":
    main()

"""System prompts (docs/recipe.md, section 2)."""

from __future__ import annotations

#: The default system prompt, after the paper's: think as an inner monologue inside
#: <think>...</think> "as casual and as long as you want" (a phrase that measurably increased
#: exploration), then a concise self-contained summary in the problem's language.
MAGISTRAL_SYSTEM_PROMPT = (
    "A user will ask you to solve a task. You should first draft your thinking process (inner "
    "monologue) until you have derived the final answer. Afterwards, write a self-contained "
    "summary of your thoughts (i.e. your summary should be succinct but contain all the critical "
    "steps you needed to reach the conclusion). You should use Markdown and LaTeX to format your "
    "response. Write both your thoughts and summary in the same language as the task posed by "
    "the user.\n\n"
    "Your thinking process must follow the template below:\n"
    "<think>\n"
    "Your thoughts or/and draft, like working through an exercise on scratch paper. Be as casual "
    "and as long as you want until you are confident to generate a correct answer.\n"
    "</think>\n\n"
    "Here, provide a concise summary that reflects your reasoning and presents a clear final "
    "answer to the user. For math, put the final answer in \\boxed{}."
)

#: Names accepted by the ``prompt.system_prompt`` parameter besides literal text.
SYSTEM_PROMPTS: dict[str, str | None] = {"magistral": MAGISTRAL_SYSTEM_PROMPT, "none": None}


def resolve_system_prompt(value: str | None) -> str | None:
    """``"magistral"``: the paper's prompt; ``"none"`` or None: no system turn; else ``value``."""
    if value is None:
        return None
    return SYSTEM_PROMPTS.get(value, value)

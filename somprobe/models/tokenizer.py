"""A small LLaMA-style tokenizer built offline.

Like LLaMA's SentencePiece tokenizer it marks word starts with "▁", writes every digit as
its own token ("12" → "▁", "1", "2"), falls back to byte tokens (``<0x0A>``) for any
character it has no piece for, and starts sequences with ``<s>``. It is trained with the
``tokenizers`` library on a fixed built-in corpus, so building it twice gives the same
vocabulary, and nothing is downloaded.

Example:
    >>> from somprobe.models.tokenizer import build_llama_like_tokenizer
    >>> tok = build_llama_like_tokenizer()
    >>> tok.convert_ids_to_tokens(tok("tag 12", add_special_tokens=False).input_ids)
    ['▁tag', '▁', '1', '2']
"""

from __future__ import annotations

import itertools
import json

from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import PreTrainedTokenizerFast

from somprobe.errors import InputError

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
IMAGE_TOKEN = "<image>"
BYTE_TOKENS = [f"<0x{i:02X}>" for i in range(256)]

# A chat template in the vicuna_v1 style of LLaVA-1.5: "USER: <image>\n... ASSISTANT: ...".
# Images of a turn come first, each followed by a newline, then the turn's text.
VICUNA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'][0]['text'] + ' ' }}"
    "{% else %}"
    "{{ message['role'] | upper }}: "
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}"
    "{{ '<image>\n' }}{% endif %}{% endfor %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ part['text'] }}"
    "{% endgeneration %}{{ eos_token }}{% else %}{{ part['text'] }}{% endif %}"
    "{% endif %}{% endfor %}"
    "{% if message['role'] != 'assistant' %}{{ ' ' }}{% endif %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

_COLOURS = "red green blue yellow orange purple pink brown black white gray cyan magenta"
_SHAPES = (
    "circle square triangle star cross diamond hexagon pentagon ellipse rectangle ring heart arrow"
)
_OBJECTS = (
    "person man woman child dog cat bird horse car bus truck bicycle boat train plane "
    "chair table bottle cup bowl book phone laptop clock vase tree sky grass road wall "
    "building window door bed couch plant apple banana pizza cake umbrella bag kite ball"
)
_SENTENCES = [
    "USER: <image>\nList the tagged items one by one. ASSISTANT:",
    "List the items tagged in the image one by one, in the order of their numbers.",
    "Please name each tagged object, one per line, starting with tag 1.",
    "What is the object tagged with id 9? Which tag is on the red circle?",
    "How many objects are tagged? Is there a blue square in the image? Yes. No.",
    "Describe the image. There are 3 shapes on a textured background.",
    "The image shows a small green triangle, a large yellow star and a purple ring.",
    "Answer the question using a single word or phrase.",
    "1. red circle\n2. blue square\n3. green triangle\n10. yellow star\n12. pink heart",
    "[1] [2] [3] (4) (5) #6 #7 tag 8 tag 11 tagged with id 13",
    "the a an of in on at to with and or is are was it this that there what which how "
    "many one two three four five six seven eight nine ten left right top bottom center "
    "middle small large big tiny object objects item items image picture photo shape "
    "color colour number numbers tagged tag tags id mark marks region regions",
]


def _corpus() -> list[str]:
    lines = list(_SENTENCES)
    colours, shapes, objects = _COLOURS.split(), _SHAPES.split(), _OBJECTS.split()
    for colour, shape in itertools.product(colours, shapes):
        lines.append(f"a {colour} {shape}, the {colour} {shape}s")
    lines.extend(f"There is a {obj} in the image. The {obj}s are tagged." for obj in objects)
    return lines


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    # Word starts get "▁"; digits and newlines become pieces of their own. The corpus holds
    # newlines, so "\n" is a learned piece here; in LLaMA it is the byte token <0x0A>.
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split("\n", behavior="isolated"),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )


def build_llama_like_tokenizer(vocab_size: int = 1200) -> PreTrainedTokenizerFast:
    """Train the tokenizer on the built-in corpus and wrap it for transformers.

    Args:
        vocab_size: size of the learned vocabulary, special and byte tokens excluded.

    Returns:
        A fast tokenizer with ``<s>``/``</s>``/``<unk>``/``<pad>`` and the ``<image>``
        special token, and the vicuna_v1 chat template.

    Raises:
        InputError: ``vocab_size`` is not an integer ≥ 0.
    """
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 0:
        raise InputError(f"vocab_size must be an integer ≥ 0, got {vocab_size!r}")
    trainer_tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    trainer_tokenizer.normalizer = normalizers.NFC()
    trainer_tokenizer.pre_tokenizer = _pre_tokenizer()
    alphabet = [chr(c) for c in range(33, 127)] + ["▁"]
    trainer = trainers.BpeTrainer(
        vocab_size=len(SPECIAL_TOKENS) + len(alphabet) + vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=alphabet,
        show_progress=False,
    )
    trainer_tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    state = json.loads(trainer_tokenizer.model.__getstate__())
    # Rebuild the model with byte tokens as ordinary vocabulary right after the special
    # tokens, as LLaMA does, so that any character round-trips through byte fallback.
    learned = sorted(state["vocab"].items(), key=lambda item: item[1])
    ordered = SPECIAL_TOKENS + BYTE_TOKENS + [t for t, _ in learned if t not in SPECIAL_TOKENS]
    vocab = {token: index for index, token in enumerate(ordered)}
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["merges"]]
    tokenizer = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True)
    )
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = _pre_tokenizer()
    tokenizer.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    bos_id = tokenizer.token_to_id("<s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)]
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        padding_side="left",
        model_max_length=2048,
        chat_template=VICUNA_CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
    )
    return wrapped

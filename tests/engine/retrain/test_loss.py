"""The training loss is the token cross-entropy of the unshifted labels."""

from __future__ import annotations

import math

import pytest
import torch

from florence2.checkpoint import build_checkpoint
from florence2.loss import count_tokens, decoder_input_ids, labels_from_ids, token_cross_entropy


def _expected(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over scored positions of -log softmax(logits[b, t])[labels[b, t]], one by one."""
    terms = []
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1]):
            if labels[b, t] != -100:
                row = logits[b, t].double()
                terms.append(float(torch.logsumexp(row, 0) - row[labels[b, t]]))
    return sum(terms) / len(terms)


def test_equals_the_expected_token_cross_entropy():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=generator) * 3
    labels = torch.randint(0, 11, (3, 7), generator=generator)
    labels[0, 5:] = -100
    labels[2, 2:] = -100
    assert math.isclose(float(token_cross_entropy(logits, labels)), _expected(logits, labels), rel_tol=1e-5)
    assert count_tokens(labels) == 21 - 2 - 5
    total = token_cross_entropy(logits, labels, reduction="sum")
    assert math.isclose(float(total), _expected(logits, labels) * count_tokens(labels), rel_tol=1e-5)
    changed = logits.clone()
    changed[2, 4] += 100.0  # an ignored position does not count
    assert float(token_cross_entropy(changed, labels)) == float(token_cross_entropy(logits, labels))
    with pytest.raises(ValueError, match="disagree"):
        token_cross_entropy(logits[:, :-1], labels)


def test_decoder_inputs_are_the_labels_shifted_right():
    labels = torch.tensor([[0, 10, 11, 2], [0, 12, 2, -100]])
    assert decoder_input_ids(labels, 2, 1).tolist() == [[2, 0, 10, 11], [2, 0, 12, 2]]
    assert labels_from_ids(torch.tensor([[0, 5, 2, 1, 1]]), 1).tolist() == [[0, 5, 2, -100, -100]]


def test_on_the_model_scores_each_position_against_its_own_label(tmp_path):
    """With a real (tiny) Florence-2, logits[t] predict labels[t]: a model fitted to one target
    has a near-zero loss on it; scoring it with once-more-shifted labels is far off."""
    from PIL import Image
    from transformers import Florence2ForConditionalGeneration, Florence2Processor

    out = build_checkpoint(tmp_path / "tiny", image_size=32, seed=0)
    processor = Florence2Processor.from_pretrained(out, local_files_only=True)
    model = Florence2ForConditionalGeneration.from_pretrained(out, local_files_only=True)
    inputs = processor(text=["<CAPTION>"], images=[Image.new("RGB", (32, 32), "red")], return_tensors="pt")
    labels = labels_from_ids(processor.tokenizer(["a red square on white"], return_tensors="pt").input_ids, 1)
    decoder = decoder_input_ids(labels, model.config.text_config.decoder_start_token_id, 1)
    logits = model(**inputs, decoder_input_ids=decoder).logits.detach()
    assert math.isclose(float(token_cross_entropy(logits, labels)), _expected(logits, labels), rel_tol=1e-5)
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = token_cross_entropy(model(**inputs, decoder_input_ids=decoder).logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    logits = model(**inputs, decoder_input_ids=decoder).logits.detach()
    assert float(token_cross_entropy(logits, labels)) < 0.05
    shifted = token_cross_entropy(logits[:, :-1], labels[:, 1:])  # the double shift some releases do
    assert float(shifted) > 1.0
    generated = model.generate(**inputs, max_new_tokens=12, num_beams=1, do_sample=False)
    assert processor.tokenizer.decode(generated[0], skip_special_tokens=True) == "a red square on white"


def test_the_training_loop_loss_equals_the_expected_token_cross_entropy(tmp_path):
    """``engine.retrain.train.batch_loss`` (lm_head only at scored positions, from collated examples of
    different target lengths) equals the expected loss on the full logits of the model."""
    import io

    from PIL import Image
    from transformers import Florence2ForConditionalGeneration

    from engine.retrain.examples import Example
    from engine.retrain.train import Collator, batch_loss, load_model

    out = build_checkpoint(tmp_path / "tiny", image_size=32, seed=3)
    model, processor = load_model(out, torch.device("cpu"))
    model.eval()
    items = []
    for colour, prompt, target in (("red", "<CAPTION>", "a red square"),
                                   ("blue", "<OD>", "square<loc_1><loc_2><loc_500><loc_600>circle<loc_7><loc_8><loc_9><loc_10>")):
        buffer = io.BytesIO()
        Image.new("RGB", (40, 30), colour).save(buffer, format="PNG")
        items.append((Example("i", "T", prompt, target, 40, 30, "s", "k", "tar", "train"), buffer.getvalue()))
    batch = Collator(processor)(items)
    labels = batch["labels"]
    assert (labels == -100).any() and len(batch["targets"]) == count_tokens(labels)
    with torch.no_grad():
        ours = float(batch_loss(model, batch, torch.device("cpu"), None)) / count_tokens(labels)
        full = model(input_ids=batch["input_ids"], pixel_values=batch["pixel_values"],
                     attention_mask=batch["attention_mask"], decoder_input_ids=batch["decoder_input_ids"]).logits
    assert isinstance(model, Florence2ForConditionalGeneration)
    assert math.isclose(ours, _expected(full, labels), rel_tol=1e-5)
    # the decoder starts from </s> and reads the labels shifted right, as generation does
    assert batch["decoder_input_ids"][:, 0].tolist() == [model.config.text_config.decoder_start_token_id] * 2
    assert torch.equal(batch["decoder_input_ids"][0, 1:4], labels[0, :3])

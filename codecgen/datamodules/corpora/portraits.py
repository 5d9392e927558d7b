"""The talking-portrait corpus for Hallo2: drawn and photo faces speaking with exact lip timings.

``python -m codecgen.datamodules.prepare portraits --out data/portraits [--size 128] [--clips 240]``

Serves Hallo2 (Cui et al., "Hallo2: Long-Duration and High-Resolution Audio-Driven Portrait
Image Animation", 2024), whose training videos (HDTF, VFHQ, Celeb-V) cannot be fetched here.
Each clip (the folder layout of :mod:`codecgen.datamodules.portrait_clips`) joins

* a face: a procedurally drawn portrait (:mod:`.faces`; about ``--identities`` people) or a
  real photo face (:mod:`.photo_faces`: scikit-image's astronaut and LFW faces) animated by
  a piecewise-affine warp, over a real photo background from the image corpus;
* speech with exact phoneme timings (:mod:`.phonemes`): espeak-ng sentences in several
  voices, speeds and pitches (timings from espeak-ng's own phoneme events), and real
  recorded asterisk prompts (one English speaker) aligned to their shipped transcripts by
  DTW against espeak-ng's rendering;
* motion: visemes from the phonemes with coarticulation (:mod:`.visemes`), a head-pose walk,
  Poisson blinks and expression labels per time range (:mod:`.face_motion`).

Identities are split, not clips: a val identity (and its backgrounds, taken from the image
corpus's val photos) never appears in training, so held-out numbers measure generalisation
to new faces. Real prompts follow the speech corpus's split rule. ``OUT/README.md`` says
what this data can and cannot show.
"""

from __future__ import annotations

import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

from codecgen.datamodules.corpora.common import CorpusBuild, already_built, deb_version, fetch_deb, hash01, log
from codecgen.datamodules.corpora.face_motion import (
    blink_track,
    expression_schedule,
    expression_weights_track,
    frame_motions,
    pose_walk,
)
from codecgen.datamodules.corpora.faces import FaceIdentity, background_canvas, draw_face
from codecgen.datamodules.corpora.photos import load_photo, photos_by_split
from codecgen.datamodules.portrait_clips import CLIP_FPS, CLIP_SAMPLE_RATE, ClipMeta, TimedLabel, write_portrait_clip

PORTRAIT_SIZE = 128
PORTRAIT_CLIPS = 240
PORTRAIT_IDENTITIES = 40
VAL_IDENTITY_FRACTION = 0.15
MIN_VAL_IDENTITIES = 3
REAL_PROMPT_SHARE = 0.25  # of the clips, when the recorded prompts can be fetched
PAD_SECONDS = 0.3  # silence (mouth at rest) before and after each utterance
MAX_SECONDS = 10.0
ESPEAK_VOICES = ("en-us", "en-gb", "en+f3", "en+m7", "en-gb-scotland+f2", "en-029+m3")
SPEECH_GAIN = 10 ** (-3 / 20)


@dataclass(frozen=True)
class Utterance:
    """Speech for one clip: 16 kHz mono audio and its phonemes (seconds from the audio's start)."""

    audio: np.ndarray
    phonemes: list[TimedLabel]
    text: str
    source: str
    licence: str


@dataclass(frozen=True)
class ClipPlan:
    """Everything one clip depends on (so a worker process can build it alone)."""

    index: int
    split: str
    identity: str  # "drawn_007", "photo_astronaut", "photo_lfw_012"
    speech: str  # "espeak", or the packaged file of a recorded prompt
    speech_text: str | None
    speech_name: str
    background: str  # a photo path, or "skimage:<name>"
    size: int
    seed: int


# --------------------------------------------------------------------------- speech


def espeak_utterance(rng: random.Random, voice: str) -> Utterance:
    """One to three generated sentences in ``voice`` at a random speed and pitch."""
    from codecgen.datamodules.corpora.phonemes import synthesize
    from codecgen.datamodules.corpora.speech import make_sentence

    while True:
        text = " ".join(make_sentence(rng) for _ in range(rng.randint(1, 2)))
        audio, phonemes = synthesize(text, voice=voice, wpm=rng.randint(130, 200), pitch=rng.randint(25, 80),
                                     sample_rate=CLIP_SAMPLE_RATE)
        if len(audio) / CLIP_SAMPLE_RATE <= MAX_SECONDS - 2 * PAD_SECONDS:
            return Utterance(audio * SPEECH_GAIN, phonemes, text, f"espeak-ng {voice}", "generated (espeak-ng, GPL-3+)")


def prompt_utterance(source: Path, text: str, name: str) -> Utterance:
    """A recorded asterisk prompt (its packaged G.722 file), decoded to 16 kHz, with phoneme times
    from DTW against espeak-ng's rendering of its transcript."""
    import tempfile

    import soundfile as sf

    from codecgen.datamodules.corpora.phonemes import align_transcript
    from codecgen.datamodules.corpora.speech import decode_prompt

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "prompt.wav"
        decode_prompt(source, wav)
        audio, sr = sf.read(str(wav), dtype="float32")
    phonemes = align_transcript(audio, sr, text)
    return Utterance(audio, phonemes, text, f"asterisk-core-sounds-en {name}", "CC-BY-SA-3.0 (Allison Smith, Digium)")


def _padded(utt: Utterance) -> tuple[np.ndarray, list[TimedLabel], int]:
    """Audio with PAD_SECONDS of silence each side, shifted phonemes, and the clip's frame count."""
    pad = np.zeros(round(PAD_SECONDS * CLIP_SAMPLE_RATE), np.float32)
    audio = np.concatenate([pad, utt.audio.astype(np.float32), pad])
    phonemes = [TimedLabel(p.label, p.start + PAD_SECONDS, p.end + PAD_SECONDS) for p in utt.phonemes]
    frames = int(len(audio) / CLIP_SAMPLE_RATE * CLIP_FPS)
    return audio, phonemes, frames


def _real_prompts(cache: Path, build: CorpusBuild) -> list[tuple[Path, str, str, str]]:
    """English asterisk prompts that have a transcript: [(G.722 file, text, name, split)] (the
    speech corpus's split); [] and a loud warning when the packages cannot be fetched."""
    from codecgen.datamodules.corpora.phonemes import read_transcripts, spoken_text
    from codecgen.datamodules.corpora.speech import asterisk_prompts

    try:
        sounds = fetch_deb("asterisk-core-sounds-en-g722", cache)
        docs = fetch_deb("asterisk-core-sounds-en", cache)
    except RuntimeError as err:
        build.warn(f"no recorded prompts (espeak-ng speech only): {err}")
        return []
    transcript_files = sorted(docs.root.glob("usr/share/doc/*/core-sounds-en.txt*"))
    if not transcript_files:
        build.warn("asterisk-core-sounds-en has no core-sounds-en.txt: no recorded prompts")
        return []
    texts = read_transcripts(transcript_files[0])
    build.copy_licences({"asterisk-core-sounds-en.copyright": sounds.copyright_file})
    speaker, prompts = asterisk_prompts("en", sounds, min_val=2)
    folder = sounds.root / "usr/share/asterisk/sounds" / speaker
    out = []
    for src, split, _ in prompts:
        key = src.relative_to(folder).with_suffix("").as_posix()  # "digits/7", as the transcript names it
        text = spoken_text(texts.get(key, ""))  # without the notes that are not speech ("[beep]")
        # G.722 is 8000 bytes a second: skip prompts too long for one clip before decoding them.
        if text and text.strip() and src.stat().st_size / 8000 <= MAX_SECONDS - 2 * PAD_SECONDS:
            out.append((src, text, key, split))
    return out


# --------------------------------------------------------------------------- faces and backgrounds


def _background(spec: str, rng: np.random.Generator) -> np.ndarray:
    """A random square crop (half to all of the shorter side) of a photo."""
    photo = load_photo(spec)
    h, w = photo.shape[:2]
    side = int(min(h, w) * rng.uniform(0.5, 1.0))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    return np.ascontiguousarray(photo[y : y + side, x : x + side])


def _face(identity: str, seed: int):
    """The drawer of an identity: a FaceIdentity for drawn faces, a PhotoFace for photos."""
    if identity.startswith("photo_"):
        from codecgen.datamodules.corpora.photo_faces import photo_face

        return photo_face(identity.removeprefix("photo_"))
    return FaceIdentity.sample(np.random.default_rng(_seed(identity, seed)))


def _seed(name: str, seed: int) -> int:
    return int(hash01(f"{seed}:{name}") * 2**63)


# --------------------------------------------------------------------------- one clip


def build_clip(plan: ClipPlan, out: Path) -> dict:
    """Render and write one clip; return its summary for the README."""
    from codecgen.datamodules.corpora.visemes import viseme_track

    rng = np.random.default_rng(_seed(f"clip{plan.index}", plan.seed))
    speech_rng = random.Random(_seed(f"speech{plan.index}", plan.seed))
    if plan.speech == "espeak":
        utt = espeak_utterance(speech_rng, plan.speech_name)
    else:
        utt = prompt_utterance(Path(plan.speech), plan.speech_text or "", plan.speech_name)
    audio, phonemes, frames = _padded(utt)
    seconds = frames / CLIP_FPS
    visemes = viseme_track(phonemes, frames, CLIP_FPS)
    pose = pose_walk(frames, CLIP_FPS, rng)
    blink = blink_track(frames, CLIP_FPS, rng)
    labels = expression_schedule(seconds, rng)
    motions = frame_motions(visemes, pose, blink, expression_weights_track(labels, frames, CLIP_FPS))
    face = _face(plan.identity, plan.seed)
    canvas = background_canvas(_background(plan.background, rng), plan.size)
    if isinstance(face, FaceIdentity):
        drawn = [draw_face(face, m, canvas, plan.size) for m in motions]
    else:
        drawn = [face.draw(m, canvas, plan.size) for m in motions]
    tracks = {
        "landmarks": np.stack([d.landmarks for d in drawn]), "visemes": visemes, "pose": pose, "blink": blink,
        "face_box": np.stack([d.face_box for d in drawn]),
        "face_mask": np.stack([d.face_mask for d in drawn]), "lip_mask": np.stack([d.lip_mask for d in drawn]),
    }
    meta = ClipMeta(
        frames=frames, size=plan.size, identity=plan.identity, source=utt.source,
        face_box=tuple(float(v) for v in drawn[0].face_box), licence=utt.licence, text=utt.text,
        expressions=labels, phonemes=phonemes,
    )
    name = f"clip_{plan.index:05d}"
    write_portrait_clip(out / plan.split / name, np.stack([d.image for d in drawn]), audio, meta, tracks)
    return {"name": name, "split": plan.split, "identity": plan.identity, "seconds": seconds,
            "speech": utt.source, "expressions": [x.label for x in labels]}


# --------------------------------------------------------------------------- the plan


def _identities(count: int, photo_faces: bool, seed: int) -> dict[str, str]:
    """identity name -> split: drawn faces and (optionally) photo faces, split by identity."""
    names = [f"drawn_{i:03d}" for i in range(count)]
    if photo_faces:
        from codecgen.datamodules.corpora.photo_faces import photo_face_names

        names += [f"photo_{n}" for n in photo_face_names()]
    ranked = sorted(names, key=lambda n: hash01(f"{seed}:{n}"))
    n_val = max(MIN_VAL_IDENTITIES, round(VAL_IDENTITY_FRACTION * len(names)))
    drawn_val = [n for n in ranked if n.startswith("drawn_")][: n_val - 1]
    photo_val = [n for n in ranked if n.startswith("photo_")][:1]  # one held-out photo face as well
    val = set(drawn_val + photo_val) if photo_val else set(ranked[:n_val])
    return {n: "val" if n in val else "train" for n in names}


def plan_clips(clips: int, identities: dict[str, str], backgrounds: dict[str, list[str]],
               prompts: list[tuple[Path, str, str, str]], size: int, seed: int) -> list[ClipPlan]:
    """Which face, speech and background each clip gets (deterministic in ``seed``)."""
    rng = random.Random(seed)
    by_split = {s: sorted(n for n, sp in identities.items() if sp == s) for s in ("train", "val")}
    prompt_pool = {s: [p for p in prompts if p[3] == s] for s in ("train", "val")}
    plans, served = [], {"train": 0, "val": 0}
    for i in range(clips):
        # About VAL_IDENTITY_FRACTION of the clips, and at least two (two held-out people).
        split = "val" if i % max(2, round(1 / VAL_IDENTITY_FRACTION)) == 0 or i == 1 else "train"
        names = by_split[split]
        identity = names[served[split] % len(names)]  # each split cycles through its people
        served[split] += 1
        pool = prompt_pool[split]
        if pool and rng.random() < REAL_PROMPT_SHARE:
            source, text, key, _ = pool[rng.randrange(len(pool))]
            speech, speech_text, speech_name = str(source), text, key
        else:
            speech, speech_text, speech_name = "espeak", None, ESPEAK_VOICES[rng.randrange(len(ESPEAK_VOICES))]
        background = backgrounds[split][rng.randrange(len(backgrounds[split]))]
        plans.append(ClipPlan(i, split, identity, speech, speech_text, speech_name, background, size, seed))
    return plans


# --------------------------------------------------------------------------- the corpus


def _readme(summaries: list[dict]) -> tuple[list[str], list[str]]:
    seconds = {s: sum(x["seconds"] for x in summaries if x["split"] == s) for s in ("train", "val")}
    counts = {s: sum(1 for x in summaries if x["split"] == s) for s in ("train", "val")}
    ids = {s: len({x["identity"] for x in summaries if x["split"] == s}) for s in ("train", "val")}
    prompts = sum(1 for x in summaries if x["speech"].startswith("asterisk"))
    intro = [
        "Talking-portrait clips for Hallo2: 25 fps lossless FFV1 video, 16 kHz speech, exact",
        "landmarks, face and lip masks, viseme tracks, phoneme timings and expression labels (the",
        "clip layout is described in `codecgen/datamodules/portrait_clips.py`).",
        "",
        f"- train: {counts['train']} clips, {seconds['train'] / 60:.1f} min, {ids['train']} identities;",
        f"  val: {counts['val']} clips, {seconds['val'] / 60:.1f} min, {ids['val']} identities never seen in training.",
        f"- speech: espeak-ng sentences (exact phoneme events) in {sum(counts.values()) - prompts} clips, and recorded",
        f"  asterisk prompts in {prompts}, aligned to their transcripts by DTW (estimated timings: a few tens of ms).",
        "",
        "## What this data can show",
        "- that the generator uses its conditions: lips follow the audio (the viseme track is the",
        "  ground truth for a lip-sync proxy), the identity of the reference image is kept, an",
        "  expression label changes the face;",
        "- drift over long, chained generations (identity and background should not wash out);",
        "- lip timing, to the frame, because the phoneme times are exact for synthetic speech.",
        "",
        "## What it cannot show",
        "- photo-realism: the faces are flat-shaded drawings or warped photos, and the speech is",
        "  mostly synthetic; a model trained here will not animate real faces convincingly;",
        "- lip-sync scores comparable to published HDTF / VFHQ numbers (Sync-C/D need a SyncNet",
        "  trained on real talking faces, and the mouth shapes here are a simplified viseme model);",
        "- FID / FVD against real video.",
    ]
    body = [
        "## Sources and licences",
        "- Drawn faces: generated here; skin and hair colours sampled from scikit-image's `astronaut`",
        "  (NASA, public domain).",
        "- Photo faces: scikit-image's `astronaut` (public domain) and `lfw_subset` (Labeled Faces in",
        "  the Wild, University of Massachusetts; research use, credit the LFW authors).",
        "- Backgrounds: photos of the image corpus (credits and licences in its README), or",
        "  scikit-image's sample photos (BSD-3-Clause licence of scikit-image; see its data credits).",
        f"- Speech: espeak-ng {deb_version('espeak-ng') or ''} (GPL-3+; its output is generated), and the",
        "  English asterisk prompts (asterisk-core-sounds-en-g722, Allison Smith for Digium,",
        "  CC-BY-SA-3.0: credit the speaker and Digium, share alike) with their transcripts",
        "  (asterisk-core-sounds-en's core-sounds-en.txt). Copyright files are in `licenses/`.",
    ]
    return intro, body


def build_portraits(
    out: str | Path = "data/portraits",
    size: int = PORTRAIT_SIZE,
    clips: int = PORTRAIT_CLIPS,
    identities: int = PORTRAIT_IDENTITIES,
    photo_faces: bool = True,
    real_prompts: bool = True,
    images: str | Path = "data/images",
    cache: str | Path | None = None,
    workers: int | None = None,
    seed: int = 0,
    force: bool = False,
) -> Path:
    """Build the talking-portrait corpus into ``out`` (see the module docstring); return ``out``."""
    out = Path(out)
    if already_built(out, force):
        return out
    if not 32 <= size <= 1024 or size % 8:
        raise ValueError(f"size must be a multiple of 8 in [32, 1024], got {size}")
    if clips < 2 or identities < MIN_VAL_IDENTITIES + 1:
        raise ValueError(f"need at least 2 clips and {MIN_VAL_IDENTITIES + 1} identities")
    from codecgen.datamodules.corpora.phonemes import espeak_available

    if not espeak_available():
        raise RuntimeError("libespeak-ng.so.1 is required to build the portrait corpus (apt-get install espeak-ng)")
    build = CorpusBuild(out, "portraits", title="codecgen talking-portrait corpus (Hallo2)")
    cache = Path(cache) if cache is not None else out.parent / ".cache" / "debs"
    build.copy_licences({"espeak-ng.copyright": Path("/usr/share/doc/espeak-ng/copyright")})
    prompts = _real_prompts(cache, build) if real_prompts else []
    names = _identities(identities, photo_faces, seed)
    plans = plan_clips(clips, names, photos_by_split(Path(images), build, "backgrounds"), prompts, size, seed)
    workers = workers or 1
    if workers == 1:
        summaries = [build_clip(p, out) for p in tqdm(plans, desc="portrait clips", mininterval=1.0)]
    else:  # spawned workers: each initialises its own espeak-ng (whose state is global)
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            jobs = pool.map(build_clip, plans, [out] * len(plans))
            summaries = list(tqdm(jobs, total=len(plans), desc="portrait clips", mininterval=1.0))
    intro, body = _readme(summaries)
    build.write_readme(" from drawn and photo faces, espeak-ng and recorded prompts.", intro, body)
    log(f"portrait corpus in {out}: {len(summaries)} clips, "
        f"{sum(s['seconds'] for s in summaries) / 60:.1f} min in {build.seconds:.0f} s")
    build.finish({"clips": len(summaries), "identities": names, "size": size, "seed": seed,
                  "minutes": round(sum(s["seconds"] for s in summaries) / 60, 2)})
    return out

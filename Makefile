# codecgen: `make test` and `make demo` do all set-up on a fresh machine; a second run skips what is done.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.codecgen-installed
TORCH := torch==2.9.1 torchvision==0.24.1 torchaudio==2.9.1
SYSTEM_TOOLS := ffmpeg espeak-ng sox
# Packages without a command, checked by a path they install: opencv-doc's sample images feed the image corpus.
SYSTEM_DATA := opencv-doc:/usr/share/doc/opencv-doc/examples/data
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export OMP_NUM_THREADS ?= 1

.PHONY: setup system-deps test demo demo-train corpus image-corpus video-corpus portrait-corpus captioned-video-corpus clean-runs

setup: system-deps $(STAMP)

$(PY):
	@echo "== set-up: $(VENV) with $(TORCH) and codecgen's dependencies (first time: a few minutes, ~3 GB of wheels with torch's CUDA libraries; pip's cache makes it quicker) =="
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# torch first, pinned: the CUDA wheels are large and nothing else may pick another build.
# -qq on the editable install: setuptools prints an information block ("Editable installation.
# Please be careful with folders ...") through pip at -q; errors still show, and stop make.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -qq -e ".[dev]"
	touch $@

system-deps:
	@missing=""; for t in $(SYSTEM_TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	for pd in $(SYSTEM_DATA); do [ -e "$${pd#*:}" ] || missing="$$missing $${pd%%:*}"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

test: setup
	$(PY) -m pytest tests

# The full corpora, each with an estimate for a 2-core machine (docs/data.md describes them).
corpus: setup
	@echo "== speech corpus into data/speech: six Debian packages of recorded prompts + espeak-ng (about 17 minutes on 2 cores) =="
	$(PY) -m codecgen.datamodules.prepare speech --out data/speech

image-corpus: setup
	@echo "== image corpus into data/images: packages' sample photos + opencv-doc + five wallpaper packages (about 7 minutes on 2 cores) =="
	$(PY) -m codecgen.datamodules.prepare image --out data/images

# Camera moves over the image corpus's photos (built first if missing), ffmpeg test sources, opencv-doc clips.
video-corpus: setup
	@echo "== video corpus into data/video: camera moves over data/images (built first if missing), ffmpeg sources, real clips (a few minutes on 2 cores) =="
	$(PY) -m codecgen.datamodules.prepare video --out data/video

# Talking portraits for Hallo2 over the image corpus's photos: drawn and photo faces, espeak-ng + recorded prompts.
portrait-corpus: image-corpus
	@echo "== portrait corpus into data/portraits: 240 clips at 128 px with exact landmarks, masks, visemes, labels (about 15 minutes on 2 cores) =="
	$(PY) -m codecgen.datamodules.prepare portraits --out data/portraits --workers 2

# Captioned clips for VideoGen over the image corpus's photos: shapes and camera moves with exact captions and flow.
captioned-video-corpus: image-corpus
	@echo "== captioned-video corpus into data/captioned_video: 1600 clips at 64 px x 32 frames with exact captions, flow and occlusion (about 15 minutes on 2 cores) =="
	$(PY) -m codecgen.datamodules.prepare captioned-video --out data/captioned_video --workers 2

# The main job end to end: shipped codecs through infer.py, tables against Opus, WebP / JPEG 2000, x265.
# It needs a few held-out files only: the full corpora in data/ where built, else their demo slices,
# which scripts/demo.py builds first in under a minute (codecgen/datamodules/corpora/demo.py).
demo: setup
	$(PY) scripts/demo.py

demo-train: corpus
	$(PY) scripts/demo.py --train

clean-runs:
	rm -rf runs demo_out

# melodylm: `make demo` and `make test` work on a fresh machine (they create .venv first).
# Every target also runs from another folder (`make -f CHECKOUT/Makefile TARGET`): the venv and configs are the
# checkout's, what a target writes (datasets/, checkpoints/, runs/, samples/) goes into the current folder.
# `make smoke` runs the long targets that way in a fresh temporary folder with the budgets below shrunk.
PYTHON ?= python3
ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
CONFIGS := $(ROOT)/configs
VENV := $(ROOT)/.venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORPUS ?= music21:oneills1850
DATA ?= datasets/prepared/oneills1850
SAMPLES ?= samples/quickstart

.PHONY: install demo test test-fast smoke bench audio clean

$(STAMP): $(ROOT)/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e "$(ROOT)[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/melodylm prepare $(CORPUS) --melody --out $(DATA)
	WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/melodylm fit --config $(CONFIGS)/quickstart.yaml --data.init_args.data_dir $(DATA) $(FIT_ARGS)
	$(BIN)/melodylm sample --ckpt checkpoints/quickstart --num 8 --seed 0 --top-p 0.85 --max-tokens 640 --out $(SAMPLES)
	@echo "Samples (MIDI + piano-roll PNG + JSON) are in $(SAMPLES)/"

test: $(STAMP)
	WANDB_MODE=disabled $(BIN)/python -m pytest -q

test-fast: $(STAMP)
	WANDB_MODE=disabled $(BIN)/python -m pytest -q -m "not slow"

# Every documented command end to end with tiny budgets, in a fresh temporary folder (docs/ci.md).
smoke: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(ROOT)/scripts/smoke.sh

# Budgets and extra flags of the long targets: empty (or 60) is the documented run; `make smoke` shrinks them.
#   FIT_ARGS            appended to each `melodylm fit` below (--trainer.max_epochs 1 --trainer.limit_train_batches 3)
#   MINUTES             bench-pianoroll: training minutes per recipe
#   PIANOROLL_ARGS      bench-pianoroll (--max-pieces 8 --epochs 1)
#   TRANSCRIPTION_ARGS  bench-transcription (--val 1 --test 1 --seconds 8)
#   POLYPHONIC_ARGS     bench-polyphonic (--val 1 --test 1 --seconds 6)
#   BUILD_ARGS          playlist-music21: build-playlists (--max-tunes 12 --category jigs)
#   DECODE_ARGS, OVERHEAD_ARGS  bench: bench.decode_speed (--tokens 32 --repeats 1), bench.train_overhead (--steps 12)
FIT_ARGS ?=
MINUTES ?= 60
PIANOROLL_ARGS ?=
TRANSCRIPTION_ARGS ?=
POLYPHONIC_ARGS ?=
BUILD_ARGS ?=
DECODE_ARGS ?=
OVERHEAD_ARGS ?=
SHARED ?= $(or $(MELODYLM_SHARED_DATA),../shared/data)
MELODY_DATA ?= datasets/prepared/nottingham-melody-t5
CKPT ?= checkpoints/nottingham-melody

# One line and exit 2 when a target's input is missing, checked as the target starts: $(call need,PATH,WHAT TO DO)
need = $(if $(shell test -e '$(1)' && echo yes),,$(error make $@: $(1) is missing: $(2)))
NEED_SHARED = ../shared/data is not part of a clone; put it beside the checkout or give SHARED=DIR

# The speed scripts (docs/speed.md); they live in the checkout's bench/, outside the package.
bench: $(STAMP)
	PYTHONPATH=$(ROOT) $(BIN)/python -m bench.train_overhead $(OVERHEAD_ARGS)
	PYTHONPATH=$(ROOT) $(BIN)/python -m bench.prepare_throughput
	PYTHONPATH=$(ROOT) $(BIN)/python -m bench.decode_speed $(DECODE_ARGS)

# Optional: General MIDI rendering for the WAVs (otherwise pretty_midi's sine synthesis).
audio:
	@command -v fluidsynth >/dev/null || apt-get install -y --no-install-recommends fluidsynth fluid-soundfont-gm \
		|| { echo "make audio: could not install fluidsynth; as root: apt-get install fluidsynth fluid-soundfont-gm" >&2; exit 2; }

# Optional: melody transcription with the LM prior (basic-pitch on ONNX; its metadata would pull TensorFlow).
.PHONY: transcribe-extra bench-transcription
transcribe-extra: $(STAMP)
	@$(BIN)/python -c "import basic_pitch, onnxruntime, librosa, mir_eval" 2>/dev/null || { \
		$(BIN)/python -m pip install --quiet -e "$(ROOT)[transcribe]" && \
		$(BIN)/python -m pip install --quiet --no-deps basic-pitch==0.4.0; }

# Melody transcription on rendered Nottingham tunes (needs transcribe-extra, audio and `make melody-lm`).
bench-transcription: transcribe-extra audio
	$(call need,$(SHARED)/nottingham/MIDI/chords,$(NEED_SHARED))
	$(call need,$(CKPT),run `make melody-lm` first (or give CKPT=...))
	MELODYLM_SHARED_DATA=$(SHARED) $(BIN)/melodylm bench transcription --ckpt $(CKPT) --data $(MELODY_DATA) \
		$(TRANSCRIPTION_ARGS)

# Polyphonic transcription with the piano-roll LMs as priors (needs transcribe-extra, audio and `make bench-pianoroll`).
.PHONY: bench-polyphonic
ROLL_CKPT_JSB ?= runs/pianoroll-jsb/checkpoints
ROLL_CKPT_NOTTINGHAM ?= runs/pianoroll-nottingham/checkpoints
bench-polyphonic: transcribe-extra audio
	$(call need,$(SHARED)/pianoroll/JSB_Chorales.mat,$(NEED_SHARED))
	$(call need,$(ROLL_CKPT_JSB),run `make bench-pianoroll` first (or give ROLL_CKPT_JSB=...))
	$(call need,$(ROLL_CKPT_NOTTINGHAM),run `make bench-pianoroll` first (or give ROLL_CKPT_NOTTINGHAM=...))
	$(BIN)/melodylm bench transcription --polyphonic --ckpt $(ROLL_CKPT_JSB) --data $(SHARED)/pianoroll/JSB_Chorales.mat \
		--out runs/transcription-jsb $(POLYPHONIC_ARGS)
	$(BIN)/melodylm bench transcription --polyphonic --ckpt $(ROLL_CKPT_NOTTINGHAM) \
		--data $(SHARED)/pianoroll/Nottingham.mat --out runs/transcription-nottingham $(POLYPHONIC_ARGS)

# Likelihood benchmarks (issue #4); need ../shared/data (or SHARED=...). Up to an hour per piano-roll recipe.
.PHONY: bench-pianoroll melody-lm bench-melody
bench-pianoroll: $(STAMP)
	$(call need,$(SHARED)/pianoroll/JSB_Chorales.mat,$(NEED_SHARED))
	$(BIN)/melodylm bench pianoroll --data $(SHARED)/pianoroll/JSB_Chorales.mat --config $(CONFIGS)/pianoroll/jsb.yaml \
		--out runs/pianoroll-jsb --max-minutes $(MINUTES) $(PIANOROLL_ARGS)
	$(BIN)/melodylm bench pianoroll --data $(SHARED)/pianoroll/Nottingham.mat \
		--config $(CONFIGS)/pianoroll/nottingham.yaml --out runs/pianoroll-nottingham --max-minutes $(MINUTES) \
		$(PIANOROLL_ARGS)

melody-lm: $(STAMP)
	$(call need,$(SHARED)/nottingham/MIDI/melody,$(NEED_SHARED))
	$(BIN)/melodylm prepare $(SHARED)/nottingham/MIDI/melody --melody --transpose 5 --out $(MELODY_DATA)
	WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/melodylm fit --config $(CONFIGS)/lm/nottingham-melody.yaml \
		--data.init_args.data_dir $(MELODY_DATA) $(FIT_ARGS)

bench-melody: $(STAMP)
	$(call need,$(CKPT),run `make melody-lm` first (or give CKPT=...))
	$(BIN)/melodylm bench melody --ckpt $(CKPT) --data $(MELODY_DATA) --out runs/melody-nottingham.json

# Playlist example from the music21 corpus alone (works on a fresh clone): build, fit id embeddings, evaluate.
.PHONY: playlist-music21
playlist-music21: $(STAMP)
	$(BIN)/melodylm build-playlists music21 --out datasets/playlists/music21 $(BUILD_ARGS)
	WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/melodylm fit --config $(CONFIGS)/playlist/music21-ids.yaml $(FIT_ARGS)
	$(BIN)/melodylm evaluate playlist --ckpt checkpoints/playlist-music21-ids \
		--playlists datasets/playlists/music21/playlists.jsonl --out runs/playlist-music21-ids.json

# Conditional generation from music21's Bach chorales alone (works on a fresh clone): both directions, then
# a melody on chord text and chords under a chorale melody (docs/seq2seq.md). Each fit stops at 12 minutes.
.PHONY: seq2seq
seq2seq: $(STAMP)
	WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/melodylm fit --config $(CONFIGS)/seq2seq/bach-chords2melody.yaml $(FIT_ARGS)
	WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/melodylm fit --config $(CONFIGS)/seq2seq/bach-melody2chords.yaml $(FIT_ARGS)
	$(BIN)/melodylm generate --ckpt checkpoints/chords2melody --condition "C Am F G C Am F G" --chord-beats 2 \
		--num 4 --seed 0 --out samples/chords2melody
	@echo "Melodies on C Am F G (MIDI + piano-roll PNG + JSON) are in samples/chords2melody/"

clean:
	rm -rf $(VENV) samples checkpoints/*/ datasets/prepared runs

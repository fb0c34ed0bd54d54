# melodylm: `make demo` and `make test` work on a fresh machine (they create .venv first).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORPUS ?= music21:oneills1850
DATA ?= datasets/prepared/oneills1850
SAMPLES ?= samples/quickstart

.PHONY: install demo test test-fast bench audio clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/melodylm prepare $(CORPUS) --melody --transpose 3 --out $(DATA)
	WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/melodylm fit --config configs/quickstart.yaml --data.init_args.data_dir $(DATA)
	$(BIN)/melodylm sample --ckpt checkpoints/quickstart --num 8 --seed 0 --top-p 0.95 --max-tokens 640 --out $(SAMPLES)
	@echo "Samples (MIDI + piano-roll PNG + JSON) are in $(SAMPLES)/"

test: $(STAMP)
	WANDB_MODE=disabled $(BIN)/python -m pytest -q

test-fast: $(STAMP)
	WANDB_MODE=disabled $(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python -m bench.train_overhead
	$(BIN)/python -m bench.prepare_throughput
	$(BIN)/python -m bench.decode_speed

# Optional: General MIDI rendering for the WAVs (otherwise pretty_midi's sine synthesis).
audio:
	command -v fluidsynth >/dev/null || apt-get install -y --no-install-recommends fluidsynth fluid-soundfont-gm

# Optional: melody transcription with the LM prior (basic-pitch on ONNX; its metadata would pull TensorFlow).
.PHONY: transcribe-extra bench-transcription
transcribe-extra: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[transcribe]"
	$(BIN)/python -m pip install --quiet --no-deps basic-pitch==0.4.0

# Melody transcription on rendered Nottingham tunes (needs transcribe-extra, audio and a melody LM checkpoint).
bench-transcription: transcribe-extra audio
	$(BIN)/melodylm bench transcription --ckpt $${CKPT:-checkpoints/nottingham-melody}

# Likelihood benchmarks (issue #4); need ../shared/data (or SHARED=...). Up to an hour per piano-roll recipe.
SHARED ?= ../shared/data
.PHONY: bench-pianoroll melody-lm bench-melody
bench-pianoroll: $(STAMP)
	$(BIN)/melodylm bench pianoroll --data $(SHARED)/pianoroll/JSB_Chorales.mat --config configs/pianoroll/jsb.yaml --out runs/pianoroll-jsb
	$(BIN)/melodylm bench pianoroll --data $(SHARED)/pianoroll/Nottingham.mat --config configs/pianoroll/nottingham.yaml --out runs/pianoroll-nottingham

melody-lm: $(STAMP)
	$(BIN)/melodylm prepare $(SHARED)/nottingham/MIDI/melody --melody --transpose 5 --out datasets/prepared/nottingham-melody-t5
	WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/melodylm fit --config configs/lm/nottingham-melody.yaml

bench-melody: $(STAMP)
	$(BIN)/melodylm bench melody --ckpt checkpoints/nottingham-melody --data datasets/prepared/nottingham-melody-t5 --out runs/melody-nottingham.json

# Playlist example from the music21 corpus alone (works on a fresh clone): build, fit id embeddings, evaluate.
.PHONY: playlist-music21
playlist-music21: $(STAMP)
	$(BIN)/melodylm build-playlists music21 --out datasets/playlists/music21
	WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/melodylm fit --config configs/playlist/music21-ids.yaml
	$(BIN)/melodylm evaluate playlist --ckpt checkpoints/playlist-music21-ids \
		--playlists datasets/playlists/music21/playlists.jsonl --out runs/playlist-music21-ids.json

clean:
	rm -rf $(VENV) samples checkpoints/*/ datasets/prepared runs

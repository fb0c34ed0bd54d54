#!/usr/bin/env bash
# `make smoke`: the make targets and the README's commands in their documented order, each with a tiny budget, in
# a fresh temporary folder (never the checkout's datasets/, checkpoints/, runs/), and every output checked to exist
# and parse. What it covers and how long it takes: docs/ci.md.
#
#   SHARED=DIR   the shared data (default: ../shared/data beside the checkout, or $MELODYLM_SHARED_DATA)
#   KEEP=1       keep the temporary folder (it is kept anyway when a step fails)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/.venv/bin"
SHARED_SRC="${SHARED:-${MELODYLM_SHARED_DATA:-$ROOT/../shared/data}}"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/melodylm-smoke.XXXXXX")"
# The commands run in TMP/work as a user runs them in a clone: ../shared/data is TMP/shared/data, a few
# Nottingham tunes and the piano-roll files linked from the real one.
WORK="$TMP/work"
mkdir -p "$WORK" "$TMP/logs"
cd "$WORK"
export PATH="$BIN:$PATH" WANDB_MODE=disabled OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
unset SHARED MELODYLM_SHARED_DATA MAKEFLAGS MFLAGS  # the targets' defaults (../shared/data) are what is tested

MAKE=(make --no-print-directory -f "$ROOT/Makefile")
CHECK=("$BIN/python" "$ROOT/scripts/check_outputs.py")
TINY=(--trainer.max_epochs 1 --trainer.limit_train_batches 3 --trainer.limit_val_batches 2
      --trainer.limit_test_batches 2 --trainer.enable_model_summary false)
TINY_LM=(--model.init_args.embedding_dim 16 --model.init_args.hidden_size 32 --model.init_args.num_layers 1)
TINY_PLAYLIST=(--model.init_args.embedding_dim 8 --model.init_args.hidden_size 16 --model.init_args.dim 8)
STARTED=$SECONDS
STEPS=0

# step NAME COMMAND...: run it with its output in TMP/logs; on failure show the end of the log and stop.
step() {
  local name="$1" start=$SECONDS log
  shift
  STEPS=$((STEPS + 1))
  log="$TMP/logs/$(printf %02d $STEPS)-$(echo "$name" | tr -cs 'A-Za-z0-9.\n' -).log"
  if ! "$@" >"$log" 2>&1; then
    echo "FAIL  $name: $*" >&2
    tail -n 25 "$log" >&2
    echo "smoke: failed at '$name' after $((SECONDS - STARTED)) s; the folder is kept: $TMP" >&2
    exit 1
  fi
  printf '%-58s %4d s\n' "ok    $name" $((SECONDS - start))
}
skip() { printf '%-58s\n' "skip  $1: $2"; }

# --- the shared data: a few tunes (what the Nottingham targets need), the piano-roll files whole --------------------
if [ -d "$SHARED_SRC/nottingham/MIDI/melody" ]; then
  mkdir -p "$TMP/shared/data/nottingham/MIDI/melody" "$TMP/shared/data/nottingham/MIDI/chords" "$TMP/shared/data/pianoroll"
  for f in $(cd "$SHARED_SRC/nottingham/MIDI/chords" && ls | sort | awk 'NR % 17 == 1'); do  # 61, from every book
    ln -s "$SHARED_SRC/nottingham/MIDI/melody/$f" "$TMP/shared/data/nottingham/MIDI/melody/$f"
    ln -s "$SHARED_SRC/nottingham/MIDI/chords/$f" "$TMP/shared/data/nottingham/MIDI/chords/$f"
  done
  ln -s "$SHARED_SRC"/pianoroll/*.mat "$TMP/shared/data/pianoroll/"
  ln -s "$SHARED_SRC/nottingham/ABC_cleaned" "$TMP/shared/data/nottingham/ABC_cleaned"
  HAVE_SHARED=1
else
  HAVE_SHARED=0
  echo "note: $SHARED_SRC is absent: the Nottingham and piano-roll steps are skipped"
fi

# --- the demo's pipeline (README: prepare, fit, validate/test, sample, score, evaluate) ----------------------------
DEMO=datasets/prepared/oneills1850
step "prepare music21 (1 source file)" melodylm prepare music21:oneills1850 --melody --out "$DEMO" \
  --corpus-files 1 --workers 2
step "  prepare.json" "${CHECK[@]}" json "$DEMO/prepare.json" pieces.train pieces.test vocab_size
step "fit quickstart (tiny)" melodylm fit --config "$ROOT/configs/quickstart.yaml" --data.init_args.data_dir "$DEMO" \
  "${TINY[@]}" "${TINY_LM[@]}" --data.init_args.seq_len 64
step "  checkpoint" test -f checkpoints/quickstart/last.ckpt
step "test quickstart" melodylm test --config "$ROOT/configs/quickstart.yaml" --data.init_args.data_dir "$DEMO" \
  --ckpt_path checkpoints/quickstart/last.ckpt "${TINY[@]}" "${TINY_LM[@]}" --trainer.logger false
TUNE="$(ls datasets/music21-oneills1850/*.mid | head -n 1)"
cp "$TUNE" tune.mid && cp "$(ls datasets/music21-oneills1850/*.mid | sed -n 2p)" other.mid
step "sample (the demo's command)" melodylm sample --ckpt checkpoints/quickstart --num 2 --seed 0 --top-p 0.85 \
  --max-tokens 640 --min-notes 8 --out samples/quickstart
step "  samples/quickstart" "${CHECK[@]}" midi samples/quickstart
step "  sidecar JSON" "${CHECK[@]}" json samples/quickstart/sample-000.json settings.seed logprob notes
step "sample with a primer, key and bars" melodylm sample --ckpt checkpoints/quickstart --primer tune.mid \
  --primer-bars 2 --bars 8 --key "D major" --num 2 --seed 1 --out variations/
step "  variations" "${CHECK[@]}" midi variations
score_json() { melodylm score --ckpt checkpoints/quickstart tune.mid other.mid --json >runs-score.jsonl; }
step "score --json" score_json
step "  score lines" "${CHECK[@]}" jsonl runs-score.jsonl nll_token nll_note
step "evaluate samples" melodylm evaluate samples samples/quickstart --reference "$DEMO/manifest.jsonl" --split test \
  --json runs/evaluate-samples.json
step "  evaluate-samples.json" "${CHECK[@]}" json runs/evaluate-samples.json samples.pieces reference.pieces features

# --- make playlist-music21, then the playlist commands and the song-embedding preset -------------------------------
step "make playlist-music21 (shrunk)" "${MAKE[@]}" playlist-music21 BUILD_ARGS="--max-tunes 12 --category jigs --category reels --category 'slow airs' --category 'bach chorales'" \
  FIT_ARGS="${TINY[*]} ${TINY_PLAYLIST[*]}"
step "  playlist-music21-ids.json" "${CHECK[@]}" json runs/playlist-music21-ids.json results.model.r_precision \
  results.popularity.ndcg results.title_match.clicks val_frac test_frac
step "playlist --out list.m3u" melodylm playlist --ckpt checkpoints/playlist-music21-ids --title "lively jigs" --n 20 \
  --out list.m3u
step "  list.m3u" "${CHECK[@]}" m3u list.m3u
step "playlist --out list.mid" melodylm playlist --ckpt checkpoints/playlist-music21-ids --title "lively jigs" --n 3 \
  --out list.mid
step "  list.mid" "${CHECK[@]}" midi list.mid
step "embed (quickstart LM)" melodylm embed --ckpt checkpoints/quickstart datasets/playlists/music21/midi \
  --out datasets/playlists/music21/embeddings.npz
step "  embeddings.npz" "${CHECK[@]}" npz datasets/playlists/music21/embeddings.npz ids vectors
step "fit playlist/music21 (song embeddings)" melodylm fit --config "$ROOT/configs/playlist/music21.yaml" \
  "${TINY[@]}" "${TINY_PLAYLIST[@]}"
step "  checkpoint" test -f checkpoints/playlist-music21/last.ckpt

# --- make seq2seq: both directions on music21's Bach chorales, generate, the progressions evaluation ----------------
step "make seq2seq (shrunk)" "${MAKE[@]}" seq2seq \
  FIT_ARGS="${TINY[*]} --model.init_args.hidden_size 16 --model.init_args.embedding_dim 8 --trainer.logger false"
step "  samples/chords2melody" "${CHECK[@]}" midi samples/chords2melody
step "generate melody -> chords (Bach)" melodylm generate --ckpt checkpoints/melody2chords \
  --condition samples/chords2melody/chords2melody-000.mid --num 1 --seed 0 --out samples/m2c-bach
step "  samples/m2c-bach" "${CHECK[@]}" midi samples/m2c-bach
step "generate chords -> melody in 3/4" melodylm generate --ckpt checkpoints/chords2melody --condition "F C7 C7 F" \
  --time-signature 3/4 --chord-beats 3 --num 1 --seed 0 --out samples/c2m-waltz
step "  samples/c2m-waltz" "${CHECK[@]}" midi samples/c2m-waltz
step "evaluate seq2seq progressions" melodylm evaluate seq2seq progressions --ckpt checkpoints/chords2melody --num 1 \
  --json runs/progressions.json
step "  progressions.json" "${CHECK[@]}" json runs/progressions.json overall.seq2seq.share overall.shuffled.share
step "fit seq2seq/bach-tagger (tiny)" melodylm fit --config "$ROOT/configs/seq2seq/bach-tagger.yaml" "${TINY[@]}" \
  --model.init_args.hidden_size 16 --model.init_args.num_layers 1 --trainer.logger false
step "  checkpoints/bach-tagger" test -f checkpoints/bach-tagger/last.ckpt

# --- ../shared/data: the melody LM and its benchmarks, the prior, the piano-roll bench, seq2seq ----------------------
if [ "$HAVE_SHARED" = 1 ]; then
  step "make melody-lm (61 tunes, tiny)" "${MAKE[@]}" melody-lm FIT_ARGS="${TINY[*]} ${TINY_LM[*]} --data.init_args.seq_len 64"
  step "make bench-melody" "${MAKE[@]}" bench-melody
  step "  melody-nottingham.json" "${CHECK[@]}" json runs/melody-nottingham.json rows.0.nll_note rows.2.nll_note notes
  printf '%s\n' '{"id": "t1", "candidates": [{"acoustic": -1.0, "notes": [[0.0, 0.48, 62], [0.5, 0.98, 66]]}, {"acoustic": -1.2, "notes": [[0.0, 0.98, 62]]}]}' >lists.jsonl
  rescore_json() { melodylm rescore --ckpt checkpoints/nottingham-melody --nbest lists.jsonl --lam 1 --json >rescored.jsonl; }
  step "rescore --json" rescore_json
  step "  rescored.jsonl" "${CHECK[@]}" jsonl rescored.jsonl ranking.0.total
  step "build-playlists nottingham" melodylm build-playlists nottingham --out datasets/playlists/nottingham \
    --per-category 10
  step "embed (Nottingham melody LM)" melodylm embed --ckpt checkpoints/nottingham-melody \
    ../shared/data/nottingham/MIDI/melody --out datasets/playlists/nottingham/embeddings.npz
  for preset in nottingham nottingham-ids; do
    step "fit playlist/$preset (tiny)" melodylm fit --config "$ROOT/configs/playlist/$preset.yaml" "${TINY[@]}" \
      "${TINY_PLAYLIST[@]}"
  done
  step "playlist --out list.json" melodylm playlist --ckpt checkpoints/playlist-nottingham --title "lively jigs" \
    --n 20 --out list.json
  step "  list.json" "${CHECK[@]}" json list.json title tracks.0.id tracks.0.path
  step "evaluate playlist (Nottingham)" melodylm evaluate playlist --ckpt checkpoints/playlist-nottingham \
    --playlists datasets/playlists/nottingham/playlists.jsonl --out runs/playlist-nottingham.json
  step "  playlist-nottingham.json" "${CHECK[@]}" json runs/playlist-nottingham.json results.model.r_precision

  if ! "$BIN/python" -c "import basic_pitch, onnxruntime, librosa, mir_eval" 2>/dev/null; then
    skip "make bench-transcription" "the transcribe extra is not installed (make transcribe-extra)"
  elif [ "$("$BIN/python" -c 'from melodylm.audio import synthesizer; print(synthesizer())')" != fluidsynth ]; then
    skip "make bench-transcription" "fluidsynth with a General MIDI soundfont is not installed (make audio)"
  else
    step "make bench-transcription (2 tunes)" "${MAKE[@]}" bench-transcription TRANSCRIPTION_ARGS="--val 1 --test 1 \
      --seconds 6 --lams 1 --beams 1 --margins none --skips '' --shifts 0 --repeats hold"
    step "  transcription results.json" "${CHECK[@]}" json runs/transcription/results.json chosen.lam \
      rows.mix/test/prior.onset_f1
    WAV="$(ls runs/transcription/audio/*.mix.wav | head -n 1)"
    step "transcribe" melodylm transcribe "$WAV" --ckpt checkpoints/nottingham-melody --bpm 120 --out tune-transcribed.mid
    step "  tune-transcribed.mid" "${CHECK[@]}" midi tune-transcribed.mid
  fi

  step "make bench-pianoroll (4 pieces, 1 epoch)" "${MAKE[@]}" bench-pianoroll MINUTES=1 \
    PIANOROLL_ARGS="--max-pieces 4 --epochs 1 --threads 1"
  for run in jsb nottingham; do
    step "  pianoroll-$run results.json" "${CHECK[@]}" json runs/pianoroll-$run/results.json test_nll_frame \
      valid_nll_frame frames best_epoch_val_nll_frame
    step "  pianoroll-$run samples" "${CHECK[@]}" midi runs/pianoroll-$run/samples
  done
  step "sample a piano-roll checkpoint" melodylm sample --ckpt runs/pianoroll-jsb/checkpoints --num 2 --seed 0 \
    --out samples/jsb
  step "  samples/jsb" "${CHECK[@]}" midi samples/jsb
  if "$BIN/python" -c "import basic_pitch, onnxruntime, librosa, mir_eval" 2>/dev/null && \
     [ "$("$BIN/python" -c 'from melodylm.audio import synthesizer; print(synthesizer())')" = fluidsynth ]; then
    step "make bench-polyphonic (2 pieces each)" "${MAKE[@]}" bench-polyphonic POLYPHONIC_ARGS="--val 1 --test 1 \
      --seconds 6 --lams 1 --thetas 0.3 --beams 1"
    for run in jsb nottingham; do
      step "  transcription-$run results.json" "${CHECK[@]}" json runs/transcription-$run/results.json \
        chosen.prior.lam rows.prior.test.frame_f1 rows.hmm.test.note_f1
    done
    WAV="$(ls runs/transcription-jsb/audio/*.wav | head -n 1)"
    step "transcribe --polyphonic" melodylm transcribe "$WAV" --polyphonic --ckpt runs/pianoroll-jsb/checkpoints \
      --bpm 120 --out chorale-transcribed.mid
    step "  chorale-transcribed.mid" "${CHECK[@]}" midi chorale-transcribed.mid
  else
    skip "make bench-polyphonic" "the transcribe extra or fluidsynth is not installed (make transcribe-extra audio)"
  fi
  score_roll() { melodylm score --ckpt runs/pianoroll-jsb/checkpoints samples/jsb/sample-000.mid --json >roll-score.jsonl; }
  step "score with a piano-roll checkpoint" score_roll
  step "  roll-score.jsonl" "${CHECK[@]}" jsonl roll-score.jsonl nll_frame

  for preset in chords2melody melody2chords tagger lm-melody; do
    step "fit seq2seq/$preset (tiny)" melodylm fit --config "$ROOT/configs/seq2seq/$preset.yaml" "${TINY[@]}" \
      --model.init_args.hidden_size 16 $([ $preset = tagger ] || echo --model.init_args.embedding_dim 8) \
      --model.init_args.num_layers 1 --trainer.logger false
  done
  step "generate chords -> melody (text)" melodylm generate --ckpt checkpoints/seq2seq-chords2melody \
    --condition "C G Am F" --chord-beats 4 --num 2 --seed 0 --top-p 0.95 --out samples/c2m
  step "  samples/c2m" "${CHECK[@]}" midi samples/c2m
  MELODY="$(ls ../shared/data/nottingham/MIDI/melody/*.mid | head -n 1)"
  step "generate melody -> chords (beam)" melodylm generate --ckpt checkpoints/seq2seq-melody2chords \
    --condition "$MELODY" --beam 4 --num 1 --out samples/m2c
  step "  samples/m2c" "${CHECK[@]}" midi samples/m2c
  step "generate with the tagger" melodylm generate --ckpt checkpoints/seq2seq-tagger --condition "$MELODY" \
    --out samples/tagger
  step "  samples/tagger" "${CHECK[@]}" midi samples/tagger
  step "generate with the tagger and seq2seq votes" melodylm generate --ckpt checkpoints/seq2seq-tagger \
    --condition "$MELODY" --seq2seq checkpoints/seq2seq-melody2chords --votes 2 --seed 0 --out samples/blend
  step "  samples/blend" "${CHECK[@]}" midi samples/blend
  step "evaluate seq2seq harmony" melodylm evaluate seq2seq harmony --ckpt checkpoints/seq2seq-melody2chords \
    --tagger checkpoints/seq2seq-tagger --limit 48 --json runs/harmony.json
  step "  harmony.json" "${CHECK[@]}" json runs/harmony.json pairs beats seq2seq.accuracy tagger.accuracy
  step "evaluate seq2seq nll" melodylm evaluate seq2seq nll --ckpt checkpoints/seq2seq-chords2melody \
    --lm checkpoints/seq2seq-lm-melody --json runs/nll.json
  step "  nll.json" "${CHECK[@]}" json runs/nll.json pairs seq2seq_nll_token lm_nll_token
else
  skip "Nottingham, piano-roll and seq2seq steps" "no ../shared/data (SHARED=DIR)"
fi

# --- make bench: the speed scripts, shrunk ---------------------------------------------------------------------------
bench_speed() {
  MELODYLM_SHARED_DATA="$TMP/shared/data" "${MAKE[@]}" bench \
    OVERHEAD_ARGS="--steps 12 --warmup 2 --seq-len 64 --batch-size 8 --data $DEMO" \
    DECODE_ARGS="--tokens 16 --naive-tokens 16 --repeats 1 --models 'quickstart (LSTM 2x256, emb 128)'" >bench.txt
}
step "make bench (speed, shrunk)" bench_speed
bench_tables() { grep -q "Lightning overhead" bench.txt && grep -q "cached re-run" bench.txt && grep -q "Decoder.sample" bench.txt; }
step "  its three tables" bench_tables

echo "smoke: $STEPS steps passed in $((SECONDS - STARTED)) s (OMP_NUM_THREADS=$OMP_NUM_THREADS)"
if [ "${KEEP:-0}" = 1 ]; then echo "smoke: outputs kept in $TMP"; else rm -rf "$TMP"; fi

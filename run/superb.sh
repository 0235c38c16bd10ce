#!/usr/bin/env bash
# The full-scale recipe: ensemble distillation with real teachers on LibriSpeech 960 h, then the
# four SUPERB tasks of the paper (PR, SID, ER with 5 folds, ASR) through s3prl's harness, then the
# hidden-set submission folder. See README.md, "Full-scale SUPERB recipe", for the data layout.
#
#   bash run/superb.sh                                  # every stage
#   STAGES="pr asr" bash run/superb.sh                  # some stages (names below)
#   DRY_RUN=1 bash run/superb.sh                        # print the commands, run nothing
#
# Every stage is resumable: a finished stage is skipped (its checkpoint or a .done marker exists),
# an interrupted one resumes (pretraining with -e, s3prl's downstream runner with -a).
set -euo pipefail

# ---- settings: edit here or set in the environment ------------------------------------------
LIBRISPEECH=${LIBRISPEECH:-/data/LibriSpeech}          # holds train-clean-100/ ... test-clean/
VOXCELEB1=${VOXCELEB1:-/data/VoxCeleb1}                # holds dev/wav/ and test/wav/
VOX1_SPLIT=${VOX1_SPLIT:-$VOXCELEB1/iden_split.txt}    # VoxCeleb1 identification split
IEMOCAP=${IEMOCAP:-/data/IEMOCAP_full_release}         # holds Session1/ ... Session5/
IEMOCAP_META=${IEMOCAP_META:-$IEMOCAP/meta_data}       # Session<k>/{train,test}_meta_data.json
LEXICON_DIR=${LEXICON_DIR:-data/libriphone}            # s3prl's libriphone lexicon files
LENGTHS=${LENGTHS:-data/len_for_bucket}                # s3prl length tables (prepare-lengths)
CONFIG=${CONFIG:-upstream_configs/ekd_multihead.yaml}  # the pretraining (teachers + scheme) config
NAME=${NAME:-$(basename "$CONFIG" .yaml)}              # experiment name
NGPU=${NGPU:-1}                                        # GPUs for pretraining (>1: torchrun + DDP)
PRETRAIN_STEPS=${PRETRAIN_STEPS:-200000}               # paper: 200k updates
ER_FOLDS=${ER_FOLDS:-"1 2 3 4 5"}                      # IEMOCAP: leave one session out
EXP=${EXP:-result}                                     # s3prl's result/ root
PYTHON=${PYTHON:-python}
S3PRL_EKD=${S3PRL_EKD:-s3prl-ekd}
STAGES=${STAGES:-"lengths pretrain pr sid er asr export"}
DRY_RUN=${DRY_RUN:-0}

cd "$(dirname "$0")/.."  # configs and run/*.py are relative to the project root

PRETRAIN_DIR=$EXP/pretrain/$NAME
STUDENT=$PRETRAIN_DIR/states-$PRETRAIN_STEPS.ckpt
DOWNSTREAM=$EXP/downstream
SUBMISSION=$EXP/submission/$NAME

# ---- helpers ---------------------------------------------------------------------------------
run() {  # print a command (shell-quoted), then run it unless DRY_RUN=1
    printf '+'; printf ' %q' "$@"; printf '\n'
    if [ "$DRY_RUN" != 1 ]; then "$@"; fi
}

run_logged() {  # run_logged LOG CMD...: as run, keeping the output in LOG too
    local log=$1; shift
    printf '+'; printf ' %q' "$@"; printf '\n'
    if [ "$DRY_RUN" != 1 ]; then mkdir -p "$(dirname "$log")"; "$@" 2>&1 | tee "$log"; fi
}

need_student() {
    if [ "$DRY_RUN" != 1 ] && [ ! -f "$STUDENT" ]; then
        echo "error: student checkpoint $STUDENT does not exist: run the pretrain stage first," \
             "or set PRETRAIN_STEPS to the step of a checkpoint in $PRETRAIN_DIR" >&2
        exit 1
    fi
}

mark_done() {  # mark a finished step (not in a dry run)
    if [ "$DRY_RUN" != 1 ]; then touch "$1"; fi
}

skip() { echo "skip: $*"; }

want() { [[ " $STAGES " == *" $1 "* ]]; }

# ---- stages ----------------------------------------------------------------------------------
stage_lengths() {  # s3prl length tables of every LibriSpeech subset (pretraining and ASR read them)
    local subset missing=0
    for subset in train-clean-100 train-clean-360 train-other-500 dev-clean test-clean; do
        [ -f "$LENGTHS/$subset.csv" ] || missing=1
    done
    if [ "$missing" = 0 ]; then skip "length tables in $LENGTHS"; return; fi
    run "$S3PRL_EKD" prepare-lengths "$LIBRISPEECH" --output "$LENGTHS"
}

stage_pretrain() {  # distil the teachers of $CONFIG into the student
    if [ -f "$STUDENT" ]; then skip "pretraining finished: $STUDENT"; return; fi
    local launch=("$PYTHON")
    if [ "$NGPU" -gt 1 ]; then launch=(torchrun --nproc_per_node "$NGPU"); fi
    if compgen -G "$PRETRAIN_DIR/states-*.ckpt" > /dev/null; then
        # resume from the newest checkpoint: its args and config are reused
        run "${launch[@]}" run/run_pretrain.py -e "$PRETRAIN_DIR"
    else
        run "${launch[@]}" run/run_pretrain.py -u ekd -g "$CONFIG" -n "$NAME" -p "$PRETRAIN_DIR" \
            -o "config.runner.total_steps=$PRETRAIN_STEPS,,config.pretrain_expert.datarc.libri_root='$LIBRISPEECH',,config.pretrain_expert.datarc.file_path='$LENGTHS'"
    fi
}

downstream() {  # downstream EXPNAME TASK CONFIG EVAL_SPLIT BEST_CKPT OVERRIDE: train (resumable), then evaluate
    local expname=$1 task=$2 config=$3 split=$4 best=$5 override=$6
    local dir=$DOWNSTREAM/$expname
    need_student
    if [ -f "$dir/.train.done" ]; then
        skip "training $expname finished"
    else
        run "$PYTHON" run/run_downstream.py -m train -a -u ekd_student -k "$STUDENT" -d "$task" -c "$config" \
            -n "$expname" -p "$dir" -o "$override"
        mark_done "$dir/.train.done"
    fi
    if [ -f "$dir/.evaluate.done" ]; then
        skip "evaluation of $expname finished: $dir/evaluate_$split.log"
    else
        # -e restores the run's upstream (-u ekd_student -k STUDENT) and config from the checkpoint
        run_logged "$dir/evaluate_$split.log" "$PYTHON" run/run_downstream.py -m evaluate -e "$dir/$best" -t "$split"
        mark_done "$dir/.evaluate.done"
    fi
}

stage_pr() {  # phoneme recognition: s3prl's ctc task with libriphone, PER
    downstream "${NAME}_pr" ctc downstream_configs/pr.yaml test dev-best.ckpt \
        "config.downstream_expert.corpus.path='$LIBRISPEECH',,config.downstream_expert.corpus.lexicon=['$LEXICON_DIR/librispeech-lexicon-200k-g2p.txt', '$LEXICON_DIR/librispeech-lexicon-allothers-g2p.txt']"
}

stage_sid() {  # speaker identification: VoxCeleb1, accuracy
    downstream "${NAME}_sid" voxceleb1 downstream_configs/sid.yaml test dev-best.ckpt \
        "config.downstream_expert.datarc.file_path='$VOXCELEB1',,config.downstream_expert.datarc.meta_data='$VOX1_SPLIT'"
}

stage_er() {  # emotion recognition: IEMOCAP, 4 classes, one fold per held-out session; report the mean
    local k
    for k in $ER_FOLDS; do
        downstream "${NAME}_er_fold$k" emotion downstream_configs/er.yaml test dev-best.ckpt \
            "config.downstream_expert.datarc.root='$IEMOCAP',,config.downstream_expert.datarc.meta_data='$IEMOCAP_META',,config.downstream_expert.datarc.test_fold='fold$k'"
    done
}

stage_asr() {  # speech recognition: LibriSpeech 100 h, character CTC, WER on test-clean
    downstream "${NAME}_asr" asr downstream_configs/asr.yaml test-clean dev-clean-best.ckpt \
        "config.downstream_expert.datarc.libri_root='$LIBRISPEECH',,config.downstream_expert.datarc.bucket_file='$LENGTHS'"
}

stage_export() {  # the SUPERB hidden-set folder, checked in a fresh process
    local marker=$EXP/submission/.$NAME.verified  # outside the folder: it is uploaded as is
    if [ -f "$marker" ]; then skip "submission $SUBMISSION verified"; return; fi
    need_student
    run "$S3PRL_EKD" export-submission "$STUDENT" "$SUBMISSION" --force
    run "$S3PRL_EKD" verify-submission "$SUBMISSION" --ckpt "$STUDENT"
    mark_done "$marker"
}

for stage in lengths pretrain pr sid er asr export; do
    if want "$stage"; then echo "== stage $stage"; "stage_$stage"; fi
done

# Job runner of the recipe's parallel steps (the feature dump). Kaldi/ESPnet convention: utils/run.pl runs
# jobs on this machine, utils/slurm.pl submits them as one Slurm array job; both take "JOB=1:N LOGFILE COMMAND".
# Training and decoding start through asr.sh's --launcher (python, torchrun ...), inside your allocation.
cmd_backend=local   # local | slurm

case "${cmd_backend}" in
  local) export feats_cmd="utils/run.pl" ;;
  # Adapt memory, time and partition (--partition NAME) to your cluster.
  slurm) export feats_cmd="utils/slurm.pl --mem 4G --time 4:00:00" ;;
  *) echo "cmd.sh: unknown cmd_backend ${cmd_backend}" >&2; return 1 ;;
esac

#!/usr/bin/env bash
# run_mpi.sh MPIEXEC NP PROGRAM ARGS...: runs PROGRAM on NP MPI ranks of this machine; exits 77 (CTest's "Not Run")
# when the build has no MPI (MPIEXEC empty) or the launcher is not installed.
set -euo pipefail
mpiexec=$1 np=$2
shift 2
if [ -z "$mpiexec" ] || ! command -v "$mpiexec" >/dev/null; then
  echo "run_mpi.sh: no MPI launcher (build without MPI, or '${mpiexec:-mpirun}' missing): not run" >&2
  exit 77
fi
exec "$mpiexec" --allow-run-as-root --oversubscribe -np "$np" "$@"

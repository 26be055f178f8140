#!/bin/sh
# dkms-post-build.sh DEST: run by DKMS in the build directory after a
# build (POST_BUILD of dkms.conf).  DKMS keeps only the modules of a
# build; keep its Module.symvers too, in DEST (the per-kernel directory
# of the DKMS tree, next to module/), so that consumer modules can link
# against this kvm.ko's exports with KBUILD_EXTRA_SYMBOLS.
set -e
mkdir -p "$1"
cp Module.symvers "$1/Module.symvers"

#!/bin/bash
# Build the test initramfs (uncompressed newc cpio):
#   mkinitramfs.sh REPO BUILD
# busybox, /init, the modules built in BUILD/obj, the test programs in
# BUILD/tests, and the test lists.
set -euo pipefail
REPO=$1
BUILD=$2
ST=$BUILD/initramfs
rm -rf "$ST"
mkdir -p "$ST"/{bin,sbin,dev,proc,sys,tmp,lib/modules,tests}
cp /bin/busybox "$ST/bin/busybox"
cp "$REPO/harness/init.sh" "$ST/init"
find "$BUILD/obj" -name '*.ko' -exec cp {} "$ST/lib/modules/" \;
cp -a "$BUILD/tests/." "$ST/tests/"
cp "$REPO"/harness/*.list "$ST/tests/"
(cd "$ST" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) > "$BUILD/initramfs.cpio"
echo "  CPIO    $(du -h "$BUILD/initramfs.cpio" | cut -f1) $(ls "$ST/lib/modules" | tr '\n' ' ')"

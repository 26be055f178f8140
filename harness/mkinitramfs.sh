#!/bin/bash
# Build the test initramfs (uncompressed newc cpio):
#   mkinitramfs.sh REPO BUILD [OBJ CPIO]
# busybox, /init, the modules built in OBJ (BUILD/obj), the test programs
# in BUILD/tests, the test lists, the nested guest (BUILD/guest) and
# e2fsck, into CPIO (BUILD/initramfs.cpio).
set -euo pipefail
REPO=$1
BUILD=$2
OBJ=${3:-$BUILD/obj}
CPIO=${4:-$BUILD/initramfs.cpio}
ST=$CPIO.d
rm -rf "$ST"
mkdir -p "$ST"/{bin,sbin,dev,proc,sys,tmp,lib/modules,tests}
cp /bin/busybox "$ST/bin/busybox"
cp "$REPO/harness/init.sh" "$ST/init"
find "$OBJ" -name '*.ko' -exec cp {} "$ST/lib/modules/" \;
cp -a "$BUILD/tests/." "$ST/tests/"
cp "$REPO"/harness/*.list "$ST/tests/"
# The nested Linux guest of xinterface_linux, and e2fsck for its disk.
if [ -f "$BUILD/guest/bzImage" ]; then
	mkdir -p "$ST/guest"
	cp "$BUILD/guest/bzImage" "$BUILD/guest/initramfs.cpio" "$ST/guest/"
fi
[ -x /sbin/e2fsck.static ] && cp /sbin/e2fsck.static "$ST/sbin/"
cp "$REPO"/harness/kmemleak.sh "$REPO"/harness/kcsan-ignore.list "$ST/tests/"
(cd "$ST" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) > "$CPIO"
echo "  CPIO    $(basename "$CPIO") $(du -h "$CPIO" | cut -f1) $(ls "$ST/lib/modules" | tr '\n' ' ')"

#!/bin/bash
# Build the nested guest's kernel image and initramfs for xinterface_linux:
#   guest/mkinitramfs.sh REPO BUILD OBJ_GUEST HDR_INCLUDE
# Into BUILD/guest: bzImage (from OBJ_GUEST) and initramfs.cpio holding
# busybox, harness/guest/init.sh as /init, xi-bad (built here, static,
# against the tree's uapi headers in HDR_INCLUDE) and Debian's mke2fs with
# the libraries it links.  The test initramfs carries BUILD/guest as
# /guest.
set -euo pipefail
REPO=$1
BUILD=$2
OBJG=$3
HDR=$4
OUT=$BUILD/guest
ST=$OUT/initramfs.d
rm -rf "$ST"
mkdir -p "$ST"/{bin,sbin,dev,proc,sys,tmp,mnt,etc,lib64,lib/x86_64-linux-gnu}
cp /bin/busybox "$ST/bin/busybox"
for a in $(/bin/busybox --list); do
	[ "$a" = busybox ] || [ "$a" = mke2fs ] || ln -sf busybox "$ST/bin/$a"
done
cp "$REPO/harness/guest/init.sh" "$ST/init"
chmod +x "$ST/init"
gcc -static -O2 -Wall -Werror -isystem "$HDR" -o "$ST/bin/xi-bad" \
	"$REPO/harness/guest/xi-bad.c"
# mke2fs from e2fsprogs (busybox's makes ext2 only), with its libraries.
cp /sbin/mke2fs "$ST/sbin/mke2fs"
cp /etc/mke2fs.conf "$ST/etc/"
ldd /sbin/mke2fs | grep -o '/[^ ]*' | while read -r l; do
	cp -L "$l" "$ST$l"
done
cp "$OBJG/arch/x86/boot/bzImage" "$OUT/bzImage"
(cd "$ST" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) > "$OUT/initramfs.cpio"
echo "  CPIO    guest/initramfs.cpio $(du -h "$OUT/initramfs.cpio" | cut -f1), guest/bzImage $(du -h "$OUT/bzImage" | cut -f1)"

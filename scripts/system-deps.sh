#!/usr/bin/env bash
# Installs the system packages the test suite and benchmarks need, only those
# missing: ffmpeg (plus mkvinfo as an independent WebM parser), Chromium and
# Firefox ESR (with PulseAudio for a null audio sink) for the browser tests,
# Prometheus for the dashboard queries, node for the client's unit tests,
# iproute2/iptables for the network-namespace topologies, and the servers the
# cluster, NAT, load and live-radio tests start themselves (redis, nginx,
# coturn, wrk, icecast2),
# and the encoders and muxers of other tools whose files the gateway must play
# (sox, lame, flac, vorbis-tools, opus-tools; mkvtoolnix above), and a real
# WebKit: WebKitGTK's WebDriver (webkit2gtk-driver, with MiniBrowser) under
# Xvfb, with GStreamer's bad plugins (without them WebKitGTK's MSE takes no
# type and AAC does not decode). GPAC (MP4Box) is not packaged in Debian 12,
# so no test depends on it; GStreamer's mp4mux (gstreamer1.0-tools +
# plugins-good) is the second fMP4 muxer the fMP4 splitter is tested against.
set -euo pipefail
need=()
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v mkvinfo >/dev/null || need+=(mkvtoolnix)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/firefox-esr ] || need+=(firefox-esr)
command -v pulseaudio >/dev/null || need+=(pulseaudio)
command -v promtool >/dev/null || need+=(prometheus)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v ip >/dev/null || need+=(iproute2)
command -v iptables >/dev/null || need+=(iptables)
command -v redis-server >/dev/null || need+=(redis-server)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v turnserver >/dev/null || need+=(coturn)
command -v wrk >/dev/null || need+=(wrk)
command -v icecast2 >/dev/null || [ -x /usr/bin/icecast2 ] || need+=(icecast2)
command -v sox >/dev/null || need+=(sox)
command -v lame >/dev/null || need+=(lame)
command -v flac >/dev/null || need+=(flac)
command -v oggenc >/dev/null || need+=(vorbis-tools)
command -v opusenc >/dev/null || need+=(opus-tools)
command -v gst-launch-1.0 >/dev/null || need+=(gstreamer1.0-tools)
[ -e /usr/lib/x86_64-linux-gnu/gstreamer-1.0/libgstisomp4.so ] || need+=(gstreamer1.0-plugins-good)
command -v WebKitWebDriver >/dev/null || need+=(webkit2gtk-driver)
command -v Xvfb >/dev/null || need+=(xvfb xauth)
dpkg -s gstreamer1.0-plugins-bad >/dev/null 2>&1 || need+=(gstreamer1.0-plugins-bad)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

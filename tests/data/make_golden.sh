#!/bin/sh
# Regenerate the small golden files that tests/unit/transcode/test_ebml.py reads.
#
#   opus-live.webm      ffmpeg's live WebM/Opus, as the transcoder makes it
#                       (Segment of unknown size, Clusters of known size,
#                       no Cues, last packet in a BlockGroup with
#                       DiscardPadding), at a low bitrate to stay small
#   opus-mkvmerge.webm  the same remuxed by mkvmerge: Segment of known size,
#                       TimecodeScale 20832, Xiph-laced SimpleBlocks, a
#                       BlockGroup with BlockDuration, Cues and Tags after
#                       the Clusters
#   flac-live.mka       Matroska with a codec that is not Opus (A_FLAC)
#
# The expected values in tests/unit/transcode/test_ebml.py were checked against mkvinfo;
# update them if these files change. Needs ffmpeg and mkvmerge (mkvtoolnix).
set -eu
cd "$(dirname "$0")"
FFMPEG=${FFMPEG:-ffmpeg}

"$FFMPEG" -hide_banner -loglevel error \
    -f lavfi -i "sine=frequency=440:duration=4.5" -ac 2 -ar 48000 \
    -c:a flac -f flac pipe:1 |
"$FFMPEG" -hide_banner -loglevel error -protocol_whitelist pipe -i pipe:0 \
    -vn -map_metadata -1 -c:a libopus -b:a 16000 -ar 48000 \
    -f webm -live 1 -cluster_time_limit 2000 \
    -fflags +bitexact -flags +bitexact pipe:1 >opus-live.webm

mkvmerge --quiet --webm --engage no_variable_data \
    --cluster-length 700ms -o opus-mkvmerge.webm opus-live.webm

"$FFMPEG" -hide_banner -loglevel error \
    -f lavfi -i "sine=frequency=440:duration=3:sample_rate=8000" -ac 1 \
    -c:a flac -f matroska -live 1 -cluster_time_limit 1000 \
    -fflags +bitexact -flags +bitexact pipe:1 >flac-live.mka

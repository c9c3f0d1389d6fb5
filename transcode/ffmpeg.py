"""Which ffmpeg, with which argv, and the rendition id that names its output.

ffmpeg only ever reads ``pipe:0`` and writes ``pipe:1``: ``-protocol_whitelist
pipe`` makes it refuse any URL even if one slipped into the input. The bitexact
flags make the same input give byte-identical WebM, which is what lets a chunk
be evicted and transcoded again without changing its SHA-256.

With ``extras=True`` the same ffmpeg run writes two more outputs,
after the WebM one and without touching it (the chunks stay bit-exact):

* ``pipe:3``: the decoded audio as float PCM in NUT (self-describing: rate and
  channels travel with it), read by a second ffmpeg, the *analysis* process
  (``Rendition.analysis_argv``), which measures EBU R128 loudness with true
  peak and the waveform's peaks on the other core. Measured on a 5-minute MP3
  (one core each): the NUT copy adds ~2 % to the transcode, while ``ebur128``
  with true peak plus ``astats`` in the transcode's own filter graph added
  ~110 %; in their own process they run in parallel and cost ~65 % of the
  transcode's CPU, so they keep up. The PCM is decoded once, by the
  transcode: the analysis process only reads PCM, it never sees the upstream.
* ``pipe:4``: the file's tags as ``ffmetadata`` (global tags merged with the
  first audio stream's, where Ogg keeps its Vorbis comments).

The runner maps ``pipe:3`` and ``pipe:4`` to whatever descriptors it opened, so
the argv (and the rendition id) does not depend on fd numbers.

The WebM output's audio goes through ``AUDIO_FILTER`` first, so that every
file other tools make encodes:

* ``aformat`` with the layouts libopus takes (Vorbis channel mapping: mono,
  stereo, 3.0, quad, 5.0, 5.1, 6.1, 7.1): any other layout (2.1, 4.0, 3.1,
  6.0, 7.0, 22.2 ...) is remapped or downmixed by swresample to the nearest
  of them, where libopus used to refuse it ("Error while opening encoder").
  A layout already in the list passes untouched.
* ``asetpts=N/SR/TB``: each frame's timestamp is the count of samples decoded
  before it. The output starts at 0 and increases monotonically whatever the
  input's timestamps do (packets that overlap, a gap after the first packet,
  a start offset), so the WebM's (and the manifest's) duration is that of the
  decoded samples.

Both cost nothing measurable on the common stereo path (3-minute stereo MP3,
user CPU ~1.7 s with and without, same session); they change the argv, so
the rendition id too: chunks made before are never mixed with these.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
from dataclasses import dataclass, replace

import ffmpeg as ffmpeg_python

__all__ = [
    "Rendition",
    "find_ffmpeg",
    "ffmpeg_version",
    "make_rendition",
    "make_live_rendition",
    "pipe_input_format",
    "LIVE_INPUT_OPTIONS",
    "FFmpegNotFound",
    "PCM_PIPE",
    "TAGS_PIPE",
    "PEAKS_PER_SECOND",
    "EXTRAS_VERSION",
    "file_input_argv",
    "AUDIO_FILTER",
    "OPUS_LAYOUTS",
    "RENDITIONS",
    "DEFAULT_RENDITION",
    "RenditionKind",
]

# Placeholders the runner replaces with the descriptors it opened.
PCM_PIPE = "pipe:3"
TAGS_PIPE = "pipe:4"
# The waveform is measured in windows of 960 samples at 48 kHz: 50 per second.
PEAKS_PER_SECOND = 50
_WINDOW_SAMPLES = 48000 // PEAKS_PER_SECOND
# Bumped whenever the extras change without the argv changing (e.g. parsing).
EXTRAS_VERSION = 1
# The channel layouts libopus encodes (Vorbis mapping family 1), in its order.
OPUS_LAYOUTS = ("mono", "stereo", "3.0", "quad", "5.0", "5.1", "6.1", "7.1")
# Before the encoder: a layout it takes, and timestamps from the decoded samples (see above).
AUDIO_FILTER = f"aformat=channel_layouts={'|'.join(OPUS_LAYOUTS)},asetpts=N/SR/TB"




@dataclass(frozen=True, slots=True)
class RenditionKind:
    """A container and codec a track can be served in, named in URLs (``?rendition=``)."""

    name: str
    container: str  # "webm" or "fmp4": which splitter cuts the output
    mime: str  # the type string players give ``MediaSource.isTypeSupported``
    codec: str  # ffmpeg's encoder
    # Before the encoder: a layout it takes, timestamps from the decoded samples.
    audio_filter: str


# The default first: its argv, bytes and id are those of every Ztream before
# fMP4 existed. The fMP4 kinds are for MSE that does not take WebM/Opus
# (Safari before 17.4): Opus in fMP4 wants the codec string "Opus" with a
# capital O there; AAC-LC ("mp4a.40.2", ffmpeg's aac encoder's default
# profile) plays in every MSE. AAC is kept to mono or stereo: ffmpeg's
# encoder does not take every layout libopus does (quad), and stereo is
# what a phone plays.
RENDITIONS: dict[str, RenditionKind] = {
    kind.name: kind
    for kind in (
        RenditionKind("webm", "webm", 'audio/webm; codecs="opus"', "libopus", AUDIO_FILTER),
        RenditionKind("fmp4-opus", "fmp4", 'audio/mp4; codecs="Opus"', "libopus", AUDIO_FILTER),
        RenditionKind(
            "fmp4-aac", "fmp4", 'audio/mp4; codecs="mp4a.40.2"', "aac",
            "aformat=channel_layouts=mono|stereo,asetpts=N/SR/TB",
        ),
    )
}
DEFAULT_RENDITION = "webm"


class FFmpegNotFound(RuntimeError):
    pass


def find_ffmpeg(configured: str = "") -> str:
    """The binary from config, else ``ffmpeg`` on PATH, else imageio-ffmpeg's."""
    if configured:
        path = shutil.which(configured)
        if path is None:
            raise FFmpegNotFound(f"transcode.ffmpeg: {configured!r} is not an executable")
        return path
    path = shutil.which("ffmpeg")
    if path is not None:
        return path
    try:
        import imageio_ffmpeg
    except ImportError:  # pragma: no cover - a declared dependency
        raise FFmpegNotFound("no ffmpeg on PATH and imageio-ffmpeg is not installed") from None
    return str(imageio_ffmpeg.get_ffmpeg_exe())


@functools.lru_cache(maxsize=8)
def ffmpeg_version(binary: str) -> str:
    """First line of ``ffmpeg -version``: part of the rendition id."""
    try:
        out = subprocess.run(
            [binary, "-hide_banner", "-version"], capture_output=True, timeout=20, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise FFmpegNotFound(f"{binary}: cannot run ({exc})") from None
    return out.decode("utf-8", "replace").splitlines()[0].strip()


@dataclass(frozen=True, slots=True)
class Rendition:
    """One fixed way to encode a track; ``id`` hashes everything that shapes the bytes."""

    id: str
    binary: str
    version: str
    argv: tuple[str, ...]
    bitrate: int
    chunk_seconds: float
    mime: str = 'audio/webm; codecs="opus"'
    # The RenditionKind's name ("webm", "fmp4-opus", "fmp4-aac") and container.
    name: str = DEFAULT_RENDITION
    container: str = "webm"
    # The analysis process's argv (loudness + waveform), empty without extras.
    analysis_argv: tuple[str, ...] = ()

    @property
    def extras(self) -> bool:
        return bool(self.analysis_argv)


def build_argv(
    binary: str, *, bitrate: int, chunk_seconds: float, extras: bool = False, kind: str = DEFAULT_RENDITION
) -> list[str]:
    spec = RENDITIONS[kind]
    container: dict[str, object]
    if spec.container == "webm":
        container = {"f": "webm", "live": 1, "cluster_time_limit": int(chunk_seconds * 1000)}
    else:
        # Fragmented MP4 with an empty moov: the init segment (ftyp + moov) comes
        # out at once and every fragment (moof + mdat) is self-contained (its
        # offsets from its own moof). Audio packets are all keyframes, so
        # -frag_duration alone sets where fragments are cut.
        container = {
            "f": "mp4",
            "movflags": "+frag_keyframe+empty_moov+default_base_moof",
            "frag_duration": int(chunk_seconds * 1_000_000),
        }
    stream = ffmpeg_python.input("pipe:0", protocol_whitelist="pipe").output(
        "pipe:1",
        vn=None,
        sn=None,
        map_metadata=-1,
        af=spec.audio_filter,
        acodec=spec.codec,
        audio_bitrate=bitrate,
        ar=48000,
        **container,
        fflags="+bitexact",
        flags="+bitexact",
    )
    compiled = stream.compile(cmd=binary)
    # Global options first: after the output file ffmpeg may ignore them.
    # level+info: the input dump (its duration and bit rate, transcode/duration.py)
    # comes at info level; every line carries its level, so the runner keeps
    # only the error lines for messages. -nostats: no progress lines.
    argv = [compiled[0], "-hide_banner", "-nostdin", "-nostats", "-loglevel", "level+info", *compiled[1:]]
    if extras:
        argv += [
            # No -map: the same automatic choice of audio stream as the WebM output.
            "-vn", "-sn", "-map_metadata", "-1", "-c:a", "pcm_f32le", "-f", "nut", PCM_PIPE,
            # Later -map_metadata fill in what earlier ones lack: global tags
            # (ID3, MP4, FLAC) win, the audio stream's (Ogg) fill the rest.
            "-map_metadata", "0", "-map_metadata", "0:s:a:0", "-f", "ffmetadata", TAGS_PIPE,
        ]
    return argv


def build_analysis_argv(binary: str) -> list[str]:
    """The analysis ffmpeg: NUT PCM on stdin; peaks on stdout, the R128 summary on stderr.

    ``ebur128`` only takes 48 kHz (BS.1770 gives its filter for that rate), so
    the audio is resampled once, first. The waveform branch downmixes to mono
    and cuts 960-sample windows; ``astats`` gives each window's peak (dBFS),
    which ``ametadata`` prints as ``frame:N pts:P pts_time:T`` +
    ``lavfi.astats.Overall.Peak_level=-12.3``. ``ebur128`` logs its summary
    (integrated loudness, true peak) at info level when it closes.
    """
    chain = ",".join(
        [
            "aresample=48000",
            # framelog=verbose: without it ebur128 logs every 100 ms at info level.
            "ebur128=peak=true:framelog=verbose",
            # Mono with the downmix normalised (L = R = x gives x, not 1.41 x),
            # so a peak stays a sample peak, at most 1.
            "aresample=ochl=mono:rematrix_maxval=1",
            f"asetnsamples=n={_WINDOW_SAMPLES}:p=0",
            "astats=metadata=1:reset=1:measure_perchannel=none:measure_overall=Peak_level",
            # Three backslashes: ``\:`` for the option parser, each escaped again for the graph.
            # direct=1: unbuffered, so the waveform grows while the transcode runs
            # (avio's 32 KB buffer would hold ~9 s of peaks back).
            "ametadata=mode=print:key=lavfi.astats.Overall.Peak_level:direct=1:file=pipe\\\\\\:1",
        ]
    )
    return [
        binary, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info",
        "-protocol_whitelist", "pipe", "-f", "nut", "-i", "pipe:0",
        "-af", chain, "-f", "null", "-",
    ]


def file_input_argv(argv: tuple[str, ...] | list[str], path: str, *, input_format: str | None = None) -> list[str]:
    """``argv`` reading the file ``path`` instead of ``pipe:0``.

    The whitelist becomes ``file,pipe`` and the input ``file:<absolute path>``
    (the ``file:`` prefix keeps ffmpeg from reading any protocol out of the
    path). ``input_format`` (e.g. ``mov``) pins the demuxer, so a spooled
    upstream can never be read as a playlist that opens other files.
    """
    if not path.startswith("/") or "\n" in path:
        raise ValueError(f"not an absolute path: {path!r}")
    out = list(argv)
    i = out.index("-i")
    if out[i + 1] != "pipe:0" or out[i - 2] != "-protocol_whitelist":
        raise ValueError("argv does not read pipe:0 under a protocol whitelist")
    out[i - 1] = "file,pipe"
    out[i + 1] = "file:" + path
    if input_format is not None:
        out[i:i] = ["-f", input_format]
    return out


def make_rendition(
    binary: str, *, bitrate: int, chunk_seconds: float, extras: bool = False, kind: str = DEFAULT_RENDITION
) -> Rendition:
    """The rendition of ``kind`` (a name in RENDITIONS); ``extras`` adds the tags, loudness and waveform outputs."""
    spec = RENDITIONS[kind]
    argv = build_argv(binary, bitrate=bitrate, chunk_seconds=chunk_seconds, extras=extras, kind=kind)
    analysis = build_analysis_argv(binary) if extras else []
    version = ffmpeg_version(binary)
    # The binary's path is not part of the identity, its version and argv are.
    parts = [version, *argv[1:], str(bitrate), repr(chunk_seconds)]
    if extras:
        # Only with extras, so that renditions without them keep their ids.
        parts += ["extras", str(EXTRAS_VERSION), *analysis[1:]]
    if kind != DEFAULT_RENDITION:
        # Only for the other kinds, so that the WebM rendition keeps its id.
        parts += ["kind", kind]
    identity = "\n".join(parts)
    rid = hashlib.sha256(identity.encode()).hexdigest()[:12]
    return Rendition(
        id=rid,
        binary=binary,
        version=version,
        argv=tuple(argv),
        bitrate=bitrate,
        chunk_seconds=chunk_seconds,
        mime=spec.mime,
        name=spec.name,
        container=spec.container,
        analysis_argv=tuple(analysis),
    )


# A live input is read as it arrives: ffmpeg's default probing (up to 5 s of
# input, 5 MB) would hold the first chunk back by the seconds an upstream
# takes to send them after its burst. 64 KiB and 0.5 s find the stream of an
# MP3, AAC (ADTS) or Ogg upstream.
LIVE_INPUT_OPTIONS = ("-probesize", "65536", "-analyzeduration", "500000")


def make_live_rendition(binary: str, *, bitrate: int, chunk_seconds: float, kind: str = DEFAULT_RENDITION) -> Rendition:
    """The rendition of a live track: ``make_rendition``'s argv with ``LIVE_INPUT_OPTIONS`` before its input.

    Its id hashes the file rendition's id and those options, so live chunks never share an id with files.
    """
    base = make_rendition(binary, bitrate=bitrate, chunk_seconds=chunk_seconds, kind=kind)
    argv = list(base.argv)
    at = argv.index("-protocol_whitelist")
    argv[at:at] = LIVE_INPUT_OPTIONS
    rid = hashlib.sha256("\n".join([base.id, "live", *LIVE_INPUT_OPTIONS]).encode()).hexdigest()[:12]
    return replace(base, id=rid, argv=tuple(argv))


def pipe_input_format(rendition: Rendition, input_format: str) -> Rendition:
    """``rendition`` reading ``pipe:0`` as ``input_format`` (``-f``) instead of probing it.

    The output's bytes do not depend on how the same input was demuxed, so the id is kept.
    """
    if not input_format.isalnum():
        raise ValueError(f"not a demuxer name: {input_format!r}")
    argv = list(rendition.argv)
    at = argv.index("-i")
    if argv[at + 1] != "pipe:0":
        raise ValueError("argv does not read pipe:0")
    argv[at:at] = ["-f", input_format]
    return replace(rendition, argv=tuple(argv))

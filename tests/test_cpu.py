"""The CPU description result files carry (sfc_tf.evaluation.cpu)."""

from sfc_tf.evaluation import cpu


def test_flags_and_model_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f avx512_vnni\n")
    described = cpu.describe(info)
    assert described["model"] == "AMD EPYC"
    assert described["flags"] == {
        "avx2": True,
        "avx512f": True,
        "avx512_bf16": False,
        "avx512_vnni": True,
        "amx_bf16": False,
        "amx_int8": False,
    }


def test_an_unreadable_cpuinfo_gives_no_flags(tmp_path):
    described = cpu.describe(tmp_path / "missing")
    assert described["model"] == "" and not any(described["flags"].values())

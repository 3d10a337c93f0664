from typer.testing import CliRunner

from somprobe.cli import app
from somprobe.models import load_model


def test_build_tiny_from_the_command_line(tmp_path):
    result = CliRunner().invoke(app, ["models", "build-tiny", str(tmp_path / "m"), "--seed", "2"])
    assert result.exit_code == 0, result.output
    model, processor = load_model(tmp_path / "m")
    assert model.config.vision_config.image_size == 112
    assert processor.image_token_id == model.config.image_token_id


def test_unknown_preset_is_a_clean_error(tmp_path):
    result = CliRunner().invoke(app, ["models", "build-tiny", str(tmp_path), "--preset", "nope"])
    assert result.exit_code != 0
    assert "preset" in str(result.exception) or "preset" in result.output


def test_console_script_prints_one_line_for_somprobe_errors(tmp_path):
    import subprocess
    import sys

    code = "import sys; sys.argv=['somprobe','models','build-tiny','x','--preset','nope']; "
    code += "from somprobe.cli import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 2
    assert done.stderr.strip().startswith("somprobe: error: unknown tiny LLaVA preset")
    assert "Traceback" not in done.stderr

"""Turn an input-pipeline failure during training or scoring into one line the user can act on.

Pictures stream from disk while Keras trains. When one vanishes or changes after the folder check (a sync tool,
a cleanup, a disk unplugged), TensorFlow stops `fit` with a `NotFoundError` or `InvalidArgumentError` whose text
is a graph-execution traceback. `data_error` recognises those and says which file, in one line; the caller
(the Trainer) raises it in place of TensorFlow's error and marks the run `failed`.

Example:
>>> try:
...     model.fit(splits.train, ...)
... except Exception as e:
...     if (error := data_error(e)) is not None:
...         raise error from e
...     raise
"""


from cnnrun.data.examples import NOT_A_PICTURE
from cnnrun.errors import UserError

# TensorFlow's ReadFile ends its line with "<path>; <the OS's reason>"
_OS_REASONS = ("No such file or directory", "Permission denied", "Is a directory", "Input/output error")
# what TensorFlow's image decoders say about bytes that are not (or no longer) a whole picture
_UNDECODABLE = ("Unknown image file format", "Invalid JPEG data", "Invalid PNG data", "Invalid GIF data",
                "Invalid BMP data", "jpeg::Uncompress failed", "Input size should be at least", "Input is empty",
                "DecodeImage", "DecodeJpeg", "DecodePng", "DecodeGif", "DecodeBmp")


def data_error(error: BaseException) -> UserError | None:
    """The one-line UserError for a `tf.data` failure of the input pipeline; None for any other error.

    Args:
        error: what `fit`, `evaluate`, `predict` or iterating a pipeline raised.

    Returns:
        A UserError naming the file (a picture that vanished or cannot be read) or saying that a picture no
        longer decodes; None when `error` is not TensorFlow's error about the data.
    """
    if type(error).__name__ not in ("NotFoundError", "InvalidArgumentError", "PermissionDeniedError",
                                    "DataLossError", "UnknownError"):
        return None
    if not type(error).__module__.startswith("tensorflow"):
        return None
    text = str(getattr(error, "message", None) or error)
    for reason in _OS_REASONS:
        path = _path_before(text, f"; {reason}")
        if path:
            return UserError(f"{path}: {reason.lower()} (it was there when the data was checked); the run stopped "
                             f"here. Put it back, or check the folder with `cnnrun data check`, and resume")
    path = _path_after(text, f"[{NOT_A_PICTURE}] [")
    if path:
        return UserError(f"{path}: no longer a picture (it was one when the data was checked); the run stopped here. "
                         f"Put the picture back, or check the folder with `cnnrun data check`, and resume")
    for words in _UNDECODABLE:
        if words in text:
            return UserError(f"a picture no longer decodes ({words}): a file changed after the data was checked; "
                             f"find it with `cnnrun data check` on the dataset folder, then resume")
    return None


def _path_before(text: str, marker: str) -> str | None:
    """The file name TensorFlow wrote just before `marker`: the end of that line after its last `: ` (the
    iterator's description) or `}} ` (the function's name)."""
    end = text.find(marker)
    if end < 0:
        return None
    line = text[text.rfind("\n", 0, end) + 1:end]
    for separator in (": ", "}} "):
        if separator in line:
            line = line.rsplit(separator, 1)[1]
    return line.strip() or None


def _path_after(text: str, marker: str) -> str | None:
    """The file name the decoder's assertion printed after `marker`, up to its closing bracket."""
    start = text.find(marker)
    if start < 0:
        return None
    start += len(marker)
    end = text.find("]", start)
    return text[start:end].strip() or None if end > start else None

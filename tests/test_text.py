"""The one text module: NFC, invisible characters, folding, tokenising."""
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from documents.services.text import code_from_filename, fold, fold_same_length, nfc, tokenize


def test_zero_width_characters_do_not_split_a_word():
    typed = "ngh\u200bỉ\u200d ph\ufeffép\u00ad"
    assert tokenize(typed) == ["nghỉ", "phép"]
    assert nfc(typed) == "nghỉ phép"


def test_fold_and_same_length_fold_agree():
    text = "Nghỉ Phép ĐÀ NẴNG ưu tiên"
    assert fold(text) == "nghi phep da nang uu tien"
    assert fold_same_length(text) == fold(text)


@given(st.text(max_size=60))
def test_same_length_fold_keeps_offsets(text):
    assert len(fold_same_length(text)) == len(text)


@given(st.text(alphabet="aăâeêioôơuưyđAĂÂĐ \u0300\u0301\u0303\u0309\u0323\u200b", max_size=40))
def test_nfd_and_invisible_characters_tokenise_like_clean_nfc(text):
    clean = unicodedata.normalize("NFC", text.replace("\u200b", ""))
    assert tokenize(unicodedata.normalize("NFD", text)) == tokenize(clean)


def test_code_from_filename_is_ascii():
    assert code_from_filename("Sổ tay kho lưu trữ (bản 2).docx") == "SO_TAY_KHO_LUU_TRU_BAN_2"
    assert code_from_filename("....txt") == "DOCUMENT"

import pytest

from gwq_data import tone


@pytest.mark.parametrize("text", [
    "130+3445等于3575。",
    "西红柿炒鸡蛋：先把鸡蛋打散炒熟盛出，再炒西红柿，最后把鸡蛋倒回去翻炒，加盐即可。",
    "我们在下午开会。总之，这就是原因，你觉得可以吗？",
    "",
])
def test_plain_text_scores_low(text):
    assert tone.score(text).score < 0.5


@pytest.mark.parametrize("text, families", [
    ("我听说算术之道，方圆十里没有不知道的。难道130加3445不是3575吗？", {"wo_tingshuo", "fangyuan", "meiyou_bu", "nandao_ma"}),
    ("嗟乎！古人云：一寸光阴一寸金。时间比黄金还要贵重百倍，就连三岁孩童也不得不懂得珍惜。", {"jiehu", "guren_yun", "comparison", "jiulian_ye", "double_negative"}),
    ("阁下以为然否？", {"pronoun", "rhetorical_end"}),
])
def test_styled_text_finds_its_devices(text, families):
    result = tone.score(text)
    assert families <= set(result.markers)
    assert result.score > 0.3


def test_more_devices_score_higher():
    one = tone.score("我听说这道菜很好吃。").score
    many = tone.score("我听说这道菜很好吃，方圆十里没有不称赞的，难道不是人间至味吗？").score
    assert 0 < one < many < 1


def test_record_score_averages_assistant_turns():
    record = {"messages": [
        {"role": "user", "content": "我听说你很厉害，难道不是吗？"},
        {"role": "assistant", "content": "嗟乎！我听说天下之事，没有不可为者。"},
        {"role": "user", "content": "好"},
        {"role": "assistant", "content": "好的。"},
    ]}
    styled = tone.score(record["messages"][1]["content"]).score
    assert tone.record_score(record) == pytest.approx(styled / 2)

"""labelmill.quality: a pure numpy/scipy library that decides each item's label, how sure we
are, how good each annotator is, and whether an item needs another label.

Estimators follow scikit-learn's contract (``fit`` returns self, fitted state ends in ``_``,
``predict_proba`` rows sum to one)::

    from labelmill.quality import DawidSkene
    model = DawidSkene().fit({"item": items, "worker": workers, "label": labels})
    model.predict(), model.predict_proba(), model.skills_, model.confusions_
"""

from labelmill.quality._codes import CodedLabels, LabelAggregator, encode
from labelmill.quality.agreement import (
    AGREEMENT_METRICS,
    AgreementResult,
    BoxAgreement,
    EncodedLabels,
    SpanAgreement,
    box_iou_agreement,
    cohen_kappa,
    encode_labels,
    fleiss_kappa,
    krippendorff_alpha,
    mean_pairwise_cohen_kappa,
    measure_agreement,
    pairwise_cohen_kappa,
    percent_agreement,
    span_f1_agreement,
)
from labelmill.quality.bwa import BWA
from labelmill.quality.chooser import AutoAggregator
from labelmill.quality.dawid_skene import DawidSkene
from labelmill.quality.decision import (
    item_needs_another_label,
    item_posterior,
    min_labels_to_target,
    needs_another_label,
    update_posterior,
)
from labelmill.quality.ebcc import EBCC
from labelmill.quality.geometry import (
    MatchedConsensus,
    box_consensus,
    box_iou,
    cluster_by_iou,
    interval_iou,
    keypoint_consensus,
    polygon_consensus,
    polygon_iou,
    polygon_iou_matrix,
    segment_consensus,
    weighted_median,
)
from labelmill.quality.glad import GLAD
from labelmill.quality.ibcc import IBCC
from labelmill.quality.mace import MACE
from labelmill.quality.majority import MajorityVote
from labelmill.quality.methods import DEFAULT_METHOD, METHODS, make_aggregator
from labelmill.quality.minimax import MinimaxEntropy, OrdinalMinimaxEntropy
from labelmill.quality.multilabel import MultiLabel
from labelmill.quality.one_coin import OneCoinDawidSkene
from labelmill.quality.pairwise import (
    BradleyTerry,
    Comparison,
    PairwiseConsensus,
    RankingConsensus,
    kendall_tau,
    pairwise_consensus,
    pairwise_skills,
    ranking_consensus,
)
from labelmill.quality.ratings import ItemRating, RatingAggregator, RatingConsensus, rating_consensus
from labelmill.quality.spammers import AnnotatorFlag, SpammerConfig, detect_spammers
from labelmill.quality.spans import relation_consensus, span_consensus, span_id_map
from labelmill.quality.transcripts import transcript_consensus, word_edit_distance, word_error_rate
from labelmill.quality.wawa import Wawa

__all__ = [
    "AGREEMENT_METRICS",
    "BWA",
    "DEFAULT_METHOD",
    "EBCC",
    "GLAD",
    "IBCC",
    "MACE",
    "METHODS",
    "AgreementResult",
    "AnnotatorFlag",
    "AutoAggregator",
    "BoxAgreement",
    "BradleyTerry",
    "CodedLabels",
    "Comparison",
    "DawidSkene",
    "EncodedLabels",
    "ItemRating",
    "LabelAggregator",
    "MajorityVote",
    "MatchedConsensus",
    "MinimaxEntropy",
    "MultiLabel",
    "OneCoinDawidSkene",
    "OrdinalMinimaxEntropy",
    "PairwiseConsensus",
    "RankingConsensus",
    "RatingAggregator",
    "RatingConsensus",
    "SpammerConfig",
    "SpanAgreement",
    "Wawa",
    "box_consensus",
    "box_iou",
    "box_iou_agreement",
    "cluster_by_iou",
    "cohen_kappa",
    "detect_spammers",
    "encode",
    "encode_labels",
    "fleiss_kappa",
    "interval_iou",
    "item_needs_another_label",
    "item_posterior",
    "kendall_tau",
    "keypoint_consensus",
    "krippendorff_alpha",
    "make_aggregator",
    "mean_pairwise_cohen_kappa",
    "measure_agreement",
    "min_labels_to_target",
    "needs_another_label",
    "pairwise_cohen_kappa",
    "pairwise_consensus",
    "pairwise_skills",
    "percent_agreement",
    "polygon_consensus",
    "polygon_iou",
    "polygon_iou_matrix",
    "ranking_consensus",
    "rating_consensus",
    "relation_consensus",
    "segment_consensus",
    "span_consensus",
    "span_f1_agreement",
    "span_id_map",
    "transcript_consensus",
    "update_posterior",
    "weighted_median",
    "word_edit_distance",
    "word_error_rate",
]

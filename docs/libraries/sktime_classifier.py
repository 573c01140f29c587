from sklearn.pipeline import make_pipeline
from sktime.classification.compose import SklearnClassifierPipeline
from sktime.datasets import load_basic_motions
from sktime.transformations.compose import Id

from skrnn import SequenceClassifier
from skrnn.preprocessing import SequenceScaler, TableToSequences

# 6 channels of 100 steps; sktime flattens the panel channel after channel
X_train, y_train = load_basic_motions(split="train", return_type="numpy3D")
X_test, y_test = load_basic_motions(split="test", return_type="numpy3D")
classifier = SklearnClassifierPipeline(
    classifier=make_pipeline(
        TableToSequences(n_channels=6),
        SequenceScaler(),
        SequenceClassifier(random_state=0),
    ),
    transformers=[Id()],
)
classifier.fit(X_train, y_train)
print(f"BasicMotions test accuracy: {classifier.score(X_test, y_test):.3f}")

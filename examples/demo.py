"""A small file to try `infill fill` on."""


def mean(values: list[float]) -> float:
    if not values:
        raise ValueError("mean of an empty list")
    return 


def variance(values: list[float]) -> float:
    m = mean(values)
    return sum((v - m) ** 2 for v in values) / len(values)


if __name__ == "__main__":
    print(mean([1.0, 2.0, 3.0]), variance([1.0, 2.0, 3.0]))
